// Internal state of a loaded Tokenizer (shared by tokenizer.cpp and stream_decoder.cpp).
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "tokenizer/added_tokens.h"
#include "tokenizer/bpe.h"
#include "tokenizer/decoder.h"
#include "tokenizer/normalizer.h"
#include "tokenizer/pretokenizer.h"
#include "tokenizer/special_rules.h"
#include "tokenizer/tokenizer.h"

namespace upg {

struct Tokenizer::Impl {
  std::unique_ptr<Normalizer> normalizer;  // may be null
  std::unique_ptr<PreTokenizer> pre;       // may be null
  std::unique_ptr<BpeModel> model;
  AddedTokenMatcher raw_added;         // added tokens with normalized=false
  AddedTokenMatcher normalized_added;  // added tokens with normalized=true
  Vocab token_ids;                     // tokenizer.json text -> id (vocab + added tokens)
  std::vector<std::string> id_text;    // id -> tokenizer.json text ("" for holes)
  std::vector<std::string> pieces;     // id -> raw bytes
  std::vector<uint8_t> special;        // id -> 1 for special added tokens
  DecodeRules decode_rules;
  SpecialRules rules;

  int32_t vocab_size() const { return static_cast<int32_t>(pieces.size()); }
  void check_id(int32_t id) const;
  // Encodes one text segment (between raw added tokens); at_start: it begins the input.
  void encode_segment(std::string_view text, bool at_start, std::vector<int32_t>& out) const;
};

}  // namespace upg
