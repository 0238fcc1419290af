// Reads the tokenizer part of a GGUF file (llama.cpp's model format): the header and the
// key/value section, keeping only tokenizer.ggml.* keys; tensor data is never touched.
//
// Layout (little-endian, GGUF v2/v3): "GGUF" u32 version, u64 n_tensors, u64 n_kv, then n_kv
// entries of {string key, u32 type, value}; string = u64 length + bytes; array = u32 elem_type +
// u64 count + elements. Types: 0 u8, 1 i8, 2 u16, 3 i16, 4 u32, 5 i32, 6 f32, 7 bool, 8 string,
// 9 array, 10 u64, 11 i64, 12 f64. Every read is bounds-checked: a truncated or corrupt file
// throws Error naming the file, the key and the offset.
#pragma once
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace upg {

struct GgufVocab {
  std::string model;                // tokenizer.ggml.model: "llama" (SentencePiece), "gpt2" (byte-level BPE)
  std::string pre;                  // tokenizer.ggml.pre: pre-tokenizer name ("llama-bpe", "qwen2", ...)
  std::vector<std::string> tokens;  // tokenizer.ggml.tokens, index = id
  std::vector<float> scores;        // tokenizer.ggml.scores (SentencePiece), may be empty
  std::vector<int32_t> token_types; // tokenizer.ggml.token_type: 1 normal, 2 unknown, 3 control,
                                    // 4 user defined, 5 unused, 6 byte; may be empty
  std::vector<std::string> merges;  // tokenizer.ggml.merges "a b" (BPE), may be empty
  std::optional<int64_t> bos_id, eos_id, unk_id, pad_id;
  std::optional<bool> add_bos, add_eos;
};

// Parses an in-memory GGUF image; `name` is used in error messages.
GgufVocab parse_gguf_vocab(const uint8_t* data, size_t size, const std::string& name);
// Maps and parses the file at path.
GgufVocab read_gguf_vocab(const std::string& path);

}  // namespace upg
