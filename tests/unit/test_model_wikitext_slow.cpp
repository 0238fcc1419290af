// WikiText-2 test perplexity of refA (696 windows of 512 tokens, about 16 TFLOP of fp32 work on
// the CPU; labelled "slow": several minutes on 2 cores) against transformers: 167.7686 within 0.1%
// (../shared/data/models/refA-phi3-26m/reference.json). Token ids: tests/golden/refA/
// wikitext_ids.safetensors (transformers' tokenizer) when present, else our tokenizer.
// UPG_PPL_WINDOWS=k limits the run to the first k windows (for timing; then nothing is compared).
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "base/mapped_file.h"
#include "eval/perplexity.h"
#include "format/safetensors.h"
#include "test_util.h"
#include "tokenizer/tokenizer.h"

using namespace upg;
namespace fs = std::filesystem;

TEST(Perplexity, RefAWikiText2MatchesTransformers) {
  UPG_NEED_SHARED_DATA(shared);
  const std::string dir = shared + "/models/refA-phi3-26m";
  const fs::path golden = fs::path(test::source_dir()) / "tests/golden/refA/wikitext_ids.safetensors";
  std::vector<int32_t> ids;
  if (fs::exists(golden)) {
    SafetensorsFile f = SafetensorsFile::open(golden.string());
    const TensorView& t = f.get("ids");
    ASSERT_EQ(t.dtype, TensorDType::I32);
    ids.resize(t.numel());
    std::memcpy(ids.data(), t.data, t.nbytes);
  } else {
    ids = Tokenizer::from_dir(dir).encode(read_text_file(shared + "/text/wiki.test.raw"), false);
  }
  EXPECT_EQ(ids.size(), 356406u);  // reference.json "tokens"
  auto model = Model::load(dir);
  const char* lim = std::getenv("UPG_PPL_WINDOWS");
  std::span<const int32_t> use(ids);
  if (lim) use = use.first(std::min<size_t>(ids.size(), static_cast<size_t>(std::atoi(lim)) * 512));
  PerplexityResult r = perplexity(*model, use, 512);
  std::printf("refA WikiText-2: %lld windows, %lld scored tokens, NLL %.3f, ppl %.4f (transformers 167.7686)\n",
              static_cast<long long>(r.windows), static_cast<long long>(r.tokens), r.total_nll, r.ppl);
  if (lim) return;
  EXPECT_EQ(r.windows, 696);
  EXPECT_EQ(r.tokens, 696 * 511);
  EXPECT_NEAR(r.ppl, 167.7686, 167.7686 * 1e-3);
}
