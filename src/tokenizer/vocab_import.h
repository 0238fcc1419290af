// Builds a Hugging Face tokenizer.json (as nlohmann::json) from other vocabulary formats, so that
// they load through the one tokenizer.json path (Tokenizer::from_json_strings):
//  - tiktoken rank files ("<base64 token> <rank>" per line: cl100k_base, o200k_base, Llama-3):
//    byte-level BPE whose merges are recovered from the ranks the standard way (each token is
//    split into the pair that BPE over lower-ranked tokens produces), ignore_merges = true so a
//    word that is a token is emitted whole, exactly as tiktoken does;
//  - GPT-2 style vocab.json + merges.txt (GPT-2, Qwen2);
//  - the tokenizer.ggml.* keys of a GGUF file: "gpt2" (byte-level BPE with stored merges and a
//    llama.cpp pre-tokenizer name) and "llama" (SentencePiece BPE with scores: merges derived
//    from the scores as transformers' LlamaConverter does, Llama-2 legacy normalizer
//    Prepend("▁") + Replace(" ", "▁"), <0xNN> byte fallback).
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "format/gguf_vocab.h"

namespace upg::vocab_import {

// Split patterns of well-known byte-level tokenizers.
extern const char* const kCl100kRegex;  // cl100k_base / Phi-4 / Llama-3 (identical pattern)
extern const char* const kQwen2Regex;   // Qwen2: as cl100k but single digits

// {"type":"Sequence","pretokenizers":[Split(r, Isolated) for r in regexes..., ByteLevel(no prefix, no regex)]}
nlohmann::json byte_level_pre_tokenizer(const std::vector<std::string>& split_regexes);

// Split patterns for a llama.cpp pre-tokenizer name ("gpt-2", "llama-bpe", "qwen2",
// "deepseek-coder", "deepseek-llm"...). Throws Error for a name it does not know.
std::vector<std::string> llama_cpp_pre_regexes(std::string_view pre);

struct ExtraToken {
  std::string content;
  int32_t id;
  bool special = true;
};

nlohmann::json tokenizer_json_from_tiktoken(std::string_view tiktoken_text, const std::vector<std::string>& split_regexes,
                                            const std::vector<ExtraToken>& added, std::string_view bos_token = {});

nlohmann::json tokenizer_json_from_vocab_merges(std::string_view vocab_json, std::string_view merges_txt,
                                                const nlohmann::json& pre_tokenizer, const std::vector<ExtraToken>& added,
                                                const nlohmann::json& normalizer = nullptr);

nlohmann::json tokenizer_json_from_gguf(const GgufVocab& v);

}  // namespace upg::vocab_import
