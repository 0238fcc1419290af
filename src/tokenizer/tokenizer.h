// Text <-> token ids for Hugging Face checkpoints, loaded from tokenizer.json.
//
// Supported: BPE models, byte-level (GPT-2, Llama-3, Qwen2, Phi-4: ByteLevel pre-tokenizer and
// decoder, Split regex pre-tokenizers) and SentencePiece-style (Llama-2, Mistral, Phi-3:
// Prepend/Replace normalizer or Metaspace, <0xNN> byte fallback); added/special tokens;
// TemplateProcessing BOS/EOS; tokenizer_config.json / generation_config.json BOS/EOS rules.
// Pipeline of encode(): added tokens are cut out of the raw text -> each remaining segment is
// normalized -> normalized added tokens cut out -> pre-tokenized into words -> BPE per word ->
// post-processor adds BOS/EOS when add_special_tokens.
//
// Byte-level tokenizers are lossless on arbitrary bytes: decode(encode(x)) == x, also for
// invalid UTF-8. decode() returns raw bytes (it may return invalid UTF-8 when the ids spell it);
// StreamDecoder only ever emits valid UTF-8.
//
// A Tokenizer is immutable after loading, cheap to copy (shared state), and safe to use from
// several threads at once.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace upg {

class Tokenizer {
 public:
  // The largest token id + 1 accepted (vocabulary and added tokens): real vocabularies have at most
  // a few hundred thousand ids; a larger id in a file is refused before anything is allocated.
  static constexpr int32_t kMaxVocabSize = 1 << 22;

  // Reads dir/tokenizer.json and, when present, tokenizer_config.json and generation_config.json
  // (config.json stands in for generation_config.json when that is absent). Throws Error naming
  // the file on a missing/malformed tokenizer.json or an unsupported component.
  static Tokenizer from_dir(const std::string& dir);

  // Same from in-memory JSON texts (a compressed model file embeds them). Empty strings mean
  // "file absent" for the two configs.
  static Tokenizer from_json_strings(std::string_view tokenizer_json, std::string_view tokenizer_config_json = {},
                                     std::string_view generation_config_json = {});

  // Token ids of text. Added/special tokens written in the text are recognised. With
  // add_special_tokens the post-processor's BOS/EOS are added.
  std::vector<int32_t> encode(std::string_view text, bool add_special_tokens = true) const;

  // Concatenated bytes of the tokens (SentencePiece-style: the leading space that the encoder
  // prepended is removed). skip_special drops special tokens. Throws Error on an id outside
  // [0, vocab_size()).
  std::string decode(std::span<const int32_t> ids, bool skip_special = false) const;

  // Raw bytes that token id stands for ("Ġthe" -> " the", "<0x0A>" -> "\n", "<|im_end|>" -> itself);
  // "" for an id that names no token. Throws Error when id is outside [0, vocab_size()).
  std::string token_piece(int32_t id) const;

  // 1 + the largest id of the vocabulary and the added tokens.
  int32_t vocab_size() const;

  // BOS token (tokenizer_config bos_token, else generation_config bos_token_id), if any.
  std::optional<int32_t> bos_id() const;
  // Whether encode(text, true) starts with a BOS token.
  bool add_bos() const;
  // Ids that end generation: tokenizer_config eos_token plus generation_config eos_token_id
  // (int or list), without duplicates, tokenizer_config's first.
  std::vector<int32_t> eos_ids() const;
  // Text of the BOS/EOS tokens ("" when there is none), for chat templates.
  std::string bos_token() const;
  std::string eos_token() const;

  // True for added tokens marked special (skipped by decode(..., true)).
  bool is_special(int32_t id) const;
  // Id of a token given as written in tokenizer.json ("<|im_end|>", "Ġthe", "▁the"), if any.
  std::optional<int32_t> token_to_id(std::string_view token) const;

  struct Impl;

 private:
  explicit Tokenizer(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<const Impl> impl_;
  friend class StreamDecoder;
};

// Incremental detokenizer for generation: push() returns the text that became complete with
// this token; partial multi-byte characters are held back until the rest arrives, flush()
// returns what is left at the end. Output is always valid UTF-8 (bytes that cannot be part of
// a valid character come out as U+FFFD). For ids whose decode() is valid UTF-8, the
// concatenation of all push() results and flush() equals decode(ids, skip_special).
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tok, bool skip_special = false);
  std::string push(int32_t id);
  std::string flush();

 private:
  std::shared_ptr<const Tokenizer::Impl> impl_;
  bool skip_special_;
  size_t strip_left_;   // leading spaces still to remove (SentencePiece-style decoders)
  std::string pending_; // bytes of an incomplete trailing character
};

}  // namespace upg
