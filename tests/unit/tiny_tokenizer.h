// Test helper: a hand-written byte-level BPE tokenizer.json (every byte a token, ids 0..255; "ab"
// 256, "abc" 257, " ab" 258; special tokens "<eos>" 300 and "<sp>" 301) for tests that need text.
#pragma once
#include <nlohmann/json.hpp>
#include <string>

#include "tokenizer/byte_level.h"

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

}  // namespace upg::test
