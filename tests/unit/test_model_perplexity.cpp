// Perplexity evaluation (eval/perplexity): the windowing and NLL accounting against a naive
// computation on a tiny random model. WikiText-2 on refA against the transformers reference
// is in test_model_wikitext_slow.cpp.
#include <cmath>
#include <filesystem>

#include "base/error.h"
#include "base/mapped_file.h"
#include "eval/perplexity.h"
#include "test_util.h"
#include "tiny_model.h"

using namespace upg;
namespace fs = std::filesystem;

TEST(Perplexity, MatchesNaiveWindowedNll) {
  fs::path d = fs::temp_directory_path() / ("upg_ppl_" + std::to_string(::getpid()));
  fs::remove_all(d);
  auto cfg = test::tiny_config("Phi3ForCausalLM", "phi3");
  auto w = test::write_tiny_model(d.string(), cfg, TensorDType::BF16, 3);
  auto model = Model::load(d.string());
  const ModelConfig& c = model->config();
  std::mt19937 rng(4);
  std::vector<int32_t> ids(30);
  for (auto& x : ids) x = static_cast<int32_t>(rng() % c.vocab_size);

  const int window = 8;  // 3 full windows; the last 6 tokens are dropped
  int calls = 0;
  PerplexityResult r = perplexity(*model, ids, window, [&](int64_t done, int64_t total) {
    ++calls;
    EXPECT_EQ(total, 3);
    EXPECT_EQ(done, calls);
  });
  EXPECT_EQ(r.windows, 3);
  EXPECT_EQ(r.tokens, 21);
  EXPECT_EQ(calls, 3);
  double nll = 0;
  for (int wi = 0; wi < 3; ++wi) {
    std::vector<int32_t> win(ids.begin() + wi * window, ids.begin() + (wi + 1) * window);
    auto ref = test::reference_logits(c, w, win);
    for (int t = 1; t < window; ++t) {
      const double* l = ref.data() + (t - 1) * c.vocab_size;
      double mx = *std::max_element(l, l + c.vocab_size), z = 0;
      for (int64_t j = 0; j < c.vocab_size; ++j) z += std::exp(l[j] - mx);
      nll += -(l[win[t]] - mx - std::log(z));
    }
  }
  EXPECT_NEAR(r.total_nll, nll, 1e-4 * nll);
  EXPECT_NEAR(r.ppl, std::exp(nll / 21), 1e-4 * r.ppl);
  // A uniform model would give ppl = vocab; a random one is in that neighbourhood, not degenerate.
  EXPECT_GT(r.ppl, 5);
  EXPECT_THROW(perplexity(*model, std::span<const int32_t>(ids).first(5), window), Error);
  EXPECT_THROW(perplexity(*model, ids, 1), Error);
  fs::remove_all(d);
}

TEST(Perplexity, TokenNllIsLogSoftmax) {
  std::vector<float> l = {1.0f, 2.0f, 3.0f};
  double z = std::exp(1.0) + std::exp(2.0) + std::exp(3.0);
  EXPECT_NEAR(token_nll(l.data(), 3, 2), -(3.0 - std::log(z)), 1e-12);
  std::vector<float> big = {1000.0f, 0.0f};  // no overflow
  EXPECT_NEAR(token_nll(big.data(), 2, 0), 0.0, 1e-12);
  EXPECT_NEAR(token_nll(big.data(), 2, 1), 1000.0, 1e-9);
}
