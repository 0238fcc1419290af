// Phi-4 style tokenizer: tokenizer.json built from tiktoken's cl100k_base ranks (the BPE that
// Phi-4 uses) with the cl100k split regex, checked against the ids tiktoken's own tests expect.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <sstream>

#include "base/mapped_file.h"
#include "test_util.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/vocab_import.h"

namespace {

using upg::Tokenizer;
namespace vi = upg::vocab_import;

Tokenizer cl100k(const std::string& data) {
  const auto j = vi::tokenizer_json_from_tiktoken(
      upg::read_text_file(data + "/tokenizers/tiktoken/cl100k_base.tiktoken"), {vi::kCl100kRegex},
      {{"<|endoftext|>", 100257, true},
       {"<|fim_prefix|>", 100258, true},
       {"<|fim_middle|>", 100259, true},
       {"<|fim_suffix|>", 100260, true},
       {"<|endofprompt|>", 100276, true}});
  return Tokenizer::from_json_strings(j.dump(), R"({"eos_token": "<|endoftext|>"})");
}

TEST(TokenizerTiktoken, Cl100kExpected) {
  UPG_NEED_SHARED_DATA(data);
  const Tokenizer tok = cl100k(data);
  EXPECT_EQ(tok.vocab_size(), 100277);
  const std::string tsv = upg::read_text_file(data + "/tokenizers/tiktoken/cl100k_expected.tsv");
  std::istringstream in(tsv);
  size_t n = 0, ok = 0;
  for (std::string line; std::getline(in, line);) {
    if (line.empty() || line[0] == '#') continue;
    const size_t tab = line.find('\t');
    ASSERT_NE(tab, std::string::npos) << line;
    const std::string text = nlohmann::json::parse(line.substr(0, tab)).get<std::string>();
    const auto want = nlohmann::json::parse(line.substr(tab + 1)).get<std::vector<int32_t>>();
    const auto got = tok.encode(text, false);
    ++n;
    if (got == want) ++ok;
    EXPECT_EQ(got, want) << "input " << line.substr(0, tab);
    EXPECT_EQ(tok.decode(got), text);
  }
  std::printf("[ vectors  ] cl100k_expected.tsv: %zu/%zu match\n", ok, n);
  EXPECT_GE(n, 10u);
}

TEST(TokenizerTiktoken, Cl100kRoundTripAndSpecials) {
  UPG_NEED_SHARED_DATA(data);
  const Tokenizer tok = cl100k(data);
  EXPECT_EQ(tok.token_to_id("<|endoftext|>"), 100257);
  EXPECT_TRUE(tok.is_special(100257));
  EXPECT_FALSE(tok.is_special(15339));
  EXPECT_EQ(tok.eos_ids(), std::vector<int32_t>{100257});
  EXPECT_FALSE(tok.add_bos());
  EXPECT_EQ(tok.encode("hello world<|endofprompt|>"), (std::vector<int32_t>{15339, 1917, 100276}));
  EXPECT_EQ(tok.decode(tok.encode("a<|endoftext|>b"), true), "ab");
  std::string all;
  for (int b = 0; b < 256; ++b) all += static_cast<char>(b);
  for (const std::string& s : {all, std::string("\xff\xfe  \t\n\x80 x"), std::string("1234567 hello!!! 😀😀")})
    EXPECT_EQ(tok.decode(tok.encode(s)), s);
}

}  // namespace
