// llama.cpp's tokenizer test vectors (ids that Hugging Face tokenizers produced, without BOS)
// against our tokenizer, each vocabulary turned into a tokenizer.json first so the normal
// loading path is exercised. Format (as llama.cpp's test-tokenizer-0 reads it): inputs in .inp
// separated by "\n__ggml_vocab_test__\n" (the file ends with one, so the last input has no
// trailing newline); .out has one line of space-separated ids per input.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "base/mapped_file.h"
#include "format/gguf_vocab.h"
#include "test_util.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/vocab_import.h"

namespace {

using upg::Tokenizer;
namespace vi = upg::vocab_import;

struct Case {
  std::string input;
  std::vector<int32_t> ids;
};

std::vector<Case> read_vectors(const std::string& base) {
  const std::string inp = upg::read_text_file(base + ".inp"), out = upg::read_text_file(base + ".out");
  const std::string sep = "\n__ggml_vocab_test__\n";
  std::vector<std::string> inputs;
  for (size_t pos = 0; pos < inp.size();) {
    const size_t next = inp.find(sep, pos);
    if (next == std::string::npos) {
      inputs.push_back(inp.substr(pos));
      break;
    }
    inputs.push_back(inp.substr(pos, next - pos));
    pos = next + sep.size();
  }
  std::vector<Case> cases;
  std::istringstream os(out);
  std::string line;
  for (size_t i = 0; std::getline(os, line); ++i) {
    EXPECT_LT(i, inputs.size()) << base << ": more output lines than inputs";
    if (i >= inputs.size()) break;
    Case c{inputs[i], {}};
    std::istringstream ls(line);
    for (int32_t id; ls >> id;) c.ids.push_back(id);
    cases.push_back(std::move(c));
  }
  EXPECT_EQ(cases.size(), inputs.size()) << base;
  return cases;
}

// Returns the number of vectors matched exactly; reports each mismatch.
size_t check_family(const Tokenizer& tok, const std::vector<Case>& cases, const std::string& family) {
  size_t ok = 0;
  for (const Case& c : cases) {
    const std::vector<int32_t> got = tok.encode(c.input, /*add_special_tokens=*/false);
    if (got == c.ids) {
      ++ok;
      continue;
    }
    std::ostringstream g, w;
    for (int32_t id : got) g << id << ' ';
    for (int32_t id : c.ids) w << id << ' ';
    ADD_FAILURE() << family << ": input '" << c.input << "'\n  got:      " << g.str() << "\n  expected: " << w.str();
  }
  std::printf("[ vectors  ] %s: %zu/%zu match\n", family.c_str(), ok, cases.size());
  EXPECT_GT(cases.size(), 40u) << family;
  return ok;
}

std::string vec_dir(const std::string& data) { return data + "/tokenizers/llama.cpp-vectors"; }

Tokenizer from_gguf(const std::string& path) {
  const upg::GgufVocab v = upg::read_gguf_vocab(path);
  return Tokenizer::from_json_strings(vi::tokenizer_json_from_gguf(v).dump());
}

void gguf_family(const std::string& name) {
  UPG_NEED_SHARED_DATA(data);
  const std::string base = vec_dir(data) + "/ggml-vocab-" + name + ".gguf";
  const Tokenizer tok = from_gguf(base);
  const auto cases = read_vectors(base);
  EXPECT_EQ(check_family(tok, cases, name + " (gguf)"), cases.size());
  // Lossless decode of what was encoded (SentencePiece decoding drops the prepended space only).
  for (const Case& c : cases) EXPECT_EQ(tok.decode(tok.encode(c.input, false)), c.input) << name << ": " << c.input;
}

TEST(TokenizerVectors, Phi3Gguf) { gguf_family("phi-3"); }
TEST(TokenizerVectors, LlamaSpmGguf) { gguf_family("llama-spm"); }
TEST(TokenizerVectors, Gpt2Gguf) { gguf_family("gpt-2"); }
TEST(TokenizerVectors, DeepseekCoderGguf) {
  UPG_NEED_SHARED_DATA(data);
  const std::string base = vec_dir(data) + "/ggml-vocab-deepseek-coder.gguf";
  const Tokenizer tok = from_gguf(base);
  const auto cases = read_vectors(base);
  EXPECT_EQ(check_family(tok, cases, "deepseek-coder (gguf)"), cases.size());
}

TEST(TokenizerVectors, Gpt2EncoderJson) {
  UPG_NEED_SHARED_DATA(data);
  const std::string d = data + "/tokenizers/gpt2";
  const nlohmann::json pre = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", true}};
  const auto j = vi::tokenizer_json_from_vocab_merges(upg::read_text_file(d + "/encoder.json"),
                                                      upg::read_text_file(d + "/vocab.bpe"), pre,
                                                      {{"<|endoftext|>", 50256, true}});
  const Tokenizer tok = Tokenizer::from_json_strings(j.dump());
  const auto cases = read_vectors(vec_dir(data) + "/ggml-vocab-gpt-2.gguf");
  EXPECT_EQ(check_family(tok, cases, "gpt-2 (encoder.json)"), cases.size());
  for (const Case& c : cases) EXPECT_EQ(tok.decode(tok.encode(c.input)), c.input);
}

TEST(TokenizerVectors, LlamaBpeTiktoken) {
  UPG_NEED_SHARED_DATA(data);
  const auto j = vi::tokenizer_json_from_tiktoken(
      upg::read_text_file(data + "/tokenizers/tiktoken/llama3.tiktoken"), {vi::kCl100kRegex},
      {{"<|begin_of_text|>", 128000, true}, {"<|end_of_text|>", 128001, true}, {"<|eot_id|>", 128009, true}},
      "<|begin_of_text|>");
  const Tokenizer tok = Tokenizer::from_json_strings(
      j.dump(), R"({"bos_token": "<|begin_of_text|>", "eos_token": {"content": "<|end_of_text|>"}})",
      R"({"bos_token_id": 128000, "eos_token_id": [128001, 128009]})");
  const auto cases = read_vectors(vec_dir(data) + "/ggml-vocab-llama-bpe.gguf");
  EXPECT_EQ(check_family(tok, cases, "llama-bpe (llama3.tiktoken)"), cases.size());
  for (const Case& c : cases) EXPECT_EQ(tok.decode(tok.encode(c.input, false)), c.input);
  // Llama-3 adds <|begin_of_text|> through its TemplateProcessing post-processor.
  EXPECT_EQ(tok.encode("Hello world"), (std::vector<int32_t>{128000, 9906, 1917}));
  EXPECT_TRUE(tok.add_bos());
  EXPECT_EQ(tok.eos_ids(), (std::vector<int32_t>{128001, 128009}));
  EXPECT_EQ(tok.decode(tok.encode("Hello world"), /*skip_special=*/true), "Hello world");
}

TEST(TokenizerVectors, Qwen2VocabMerges) {
  UPG_NEED_SHARED_DATA(data);
  const std::string d = data + "/tokenizers/qwen2";
  const auto j = vi::tokenizer_json_from_vocab_merges(
      upg::read_text_file(d + "/vocab.json"), upg::read_text_file(d + "/merges.txt"),
      vi::byte_level_pre_tokenizer({vi::kQwen2Regex}),
      {{"<|endoftext|>", 151643, true}, {"<|im_start|>", 151644, true}, {"<|im_end|>", 151645, true}},
      {{"type", "NFC"}});
  const Tokenizer tok = Tokenizer::from_json_strings(j.dump(), upg::read_text_file(d + "/tokenizer_config.json"),
                                                     upg::read_text_file(d + "/generation_config.json"));
  const auto cases = read_vectors(vec_dir(data) + "/ggml-vocab-qwen2.gguf");
  EXPECT_EQ(check_family(tok, cases, "qwen2 (vocab.json+merges.txt)"), cases.size());
  // Qwen2: no BOS; eos_token <|im_end|> plus generation_config's [151645, 151643].
  EXPECT_FALSE(tok.bos_id().has_value());
  EXPECT_FALSE(tok.add_bos());
  EXPECT_EQ(tok.eos_ids(), (std::vector<int32_t>{151645, 151643}));
  EXPECT_EQ(tok.eos_token(), "<|im_end|>");
  EXPECT_EQ(tok.encode("<|im_start|>user\nhi<|im_end|>"), (std::vector<int32_t>{151644, 872, 198, 6023, 151645}));
  // NFC: a decomposed "é" (e + U+0301) encodes like the composed one.
  EXPECT_EQ(tok.encode("caf\x65\xCC\x81"), tok.encode("caf\xC3\xA9"));
}

}  // namespace
