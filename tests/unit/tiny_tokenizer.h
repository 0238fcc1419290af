// Test helper: a hand-written byte-level BPE tokenizer.json (every byte a token, ids 0..255; "ab"
// 256, "abc" 257, " ab" 258; special tokens "<eos>" 300 and "<sp>" 301) for tests that need text,
// and a tiny random model whose vocabulary matches it.
#pragma once
#include <unistd.h>

#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "runtime/model.h"
#include "tiny_model.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/tokenizer.h"

namespace upg::test {

inline std::string tiny_tokenizer_json(const std::string& model_type = "BPE") {
  using nlohmann::json;
  json vocab = json::object();
  int id = 0;
  for (int b = 0; b < 256; ++b) vocab[upg::byte_level::encode(std::string(1, static_cast<char>(b)))] = id++;
  for (const char* t : {"ab", "abc", "\xC4\xA0" "ab"}) vocab[t] = id++;
  json j = {{"added_tokens", {{{"id", 300}, {"content", "<eos>"}, {"special", true}, {"normalized", false}},
                              {{"id", 301}, {"content", "<sp>"}, {"special", true}, {"rstrip", true}}}},
            {"normalizer", nullptr},
            {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}},
            {"post_processor", {{"type", "TemplateProcessing"},
                                {"single", {{{"Sequence", {{"id", "A"}}}}, {{"SpecialToken", {{"id", "<eos>"}}}}}},
                                {"special_tokens", {{"<eos>", {{"id", "<eos>"}, {"ids", {300}}}}}}}},
            {"decoder", {{"type", "ByteLevel"}}},
            {"model", {{"type", model_type}, {"vocab", vocab}, {"merges", {"a b", json::array({"ab", "c"}), "\xC4\xA0 ab"}}}}};
  return j.dump();
}

inline Tokenizer tiny_text_tokenizer() {
  return Tokenizer::from_json_strings(tiny_tokenizer_json(), "", R"({"eos_token_id": 300})");
}

// A tiny random Llama for tiny_text_tokenizer(): vocabulary 302, end of sequence 300, 256
// positions (weights seed 11, bf16), loaded from a temporary directory named after `tag`.
inline std::unique_ptr<Model> tiny_text_model(const std::string& tag) {
  namespace fs = std::filesystem;
  fs::path d = fs::temp_directory_path() / ("upg_text_" + std::to_string(::getpid()) + "_" + tag);
  fs::remove_all(d);
  nlohmann::json c = tiny_config("LlamaForCausalLM", "llama");
  c["vocab_size"] = 302;
  c["eos_token_id"] = 300;
  c["max_position_embeddings"] = 256;
  write_tiny_model(d.string(), c, TensorDType::BF16, 11);
  auto m = Model::load(d.string());
  fs::remove_all(d);
  return m;
}

}  // namespace upg::test
