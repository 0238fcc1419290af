// refA's tokenizer against Hugging Face tokenizers: ids of sample texts and of the whole
// WikiText-2 test text, as produced by tools/make_goldens.py (tests/golden/refA/).
#include <cstring>
#include <fstream>
#include <sstream>

#include "format/safetensors.h"
#include "test_util.h"
#include "tokenizer/tokenizer.h"

using namespace upg;

namespace {
std::vector<int32_t> ids_of(const TensorView& t) {
  std::vector<int32_t> v(t.numel());
  if (!v.empty()) std::memcpy(v.data(), t.data, v.size() * 4);
  return v;
}
std::string golden_dir() { return test::source_dir() + "/tests/golden/refA"; }
}  // namespace

TEST(TokenizerRefAGolden, SampleTextsMatchHuggingFace) {
  UPG_NEED_SHARED_DATA(data);
  Tokenizer tok = Tokenizer::from_dir(data + "/models/refA-phi3-26m");
  auto g = SafetensorsFile::open(golden_dir() + "/golden.safetensors");
  int checked = 0;
  for (int i = 0; g.find("text." + std::to_string(i)); ++i) {
    const TensorView& t = g.get("text." + std::to_string(i));
    std::string text(reinterpret_cast<const char*>(t.data), t.nbytes);
    auto expected = ids_of(g.get("tok." + std::to_string(i)));
    EXPECT_EQ(tok.encode(text, true), expected) << "text " << i << ": '" << text << "'";
    EXPECT_EQ(tok.decode(tok.encode(text, true)), text);
    ++checked;
  }
  EXPECT_GE(checked, 10);
  for (int i = 0; g.find("prompt." + std::to_string(i)); ++i) {
    auto prompt = ids_of(g.get("prompt." + std::to_string(i)));
    EXPECT_FALSE(prompt.empty());
  }
}

TEST(TokenizerRefAGolden, WholeWikiTextMatchesHuggingFace) {
  UPG_NEED_SHARED_DATA(data);
  Tokenizer tok = Tokenizer::from_dir(data + "/models/refA-phi3-26m");
  std::ifstream f(data + "/text/wiki.test.raw", std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  auto g = SafetensorsFile::open(golden_dir() + "/wikitext_ids.safetensors");
  auto expected = ids_of(g.get("ids"));
  auto got = tok.encode(ss.str(), true);
  ASSERT_EQ(got.size(), expected.size());
  size_t first_diff = 0;
  while (first_diff < got.size() && got[first_diff] == expected[first_diff]) ++first_diff;
  EXPECT_EQ(first_diff, got.size()) << "first difference at token " << first_diff;
  EXPECT_EQ(got.size(), 356406u);  // reference.json's token count
}
