// llama.cpp-method perplexity and KL divergence (eval/llama_perplexity, eval/kl_divergence): the
// window layout (second half scored, BOS substitution) against a naive full-window computation on
// tiny random models; KLD of a model against itself is exactly 0 with 100% same top token; KLD of
// two different models against a direct sum; the statistics (percentiles, median, same-top
// uncertainty) on hand-made values; refA on the first windows of WikiText-2 when shared data is present.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <random>

#include "base/error.h"
#include "base/mapped_file.h"
#include "eval/kl_divergence.h"
#include "eval/llama_perplexity.h"
#include "eval/loglikelihood.h"
#include "test_util.h"
#include "tiny_model.h"

using namespace upg;
namespace fs = std::filesystem;

namespace {
struct Tiny {
  fs::path dir;
  std::unique_ptr<Model> model;
  explicit Tiny(uint32_t seed) {
    dir = fs::temp_directory_path() / ("upg_kld_" + std::to_string(::getpid()) + "_" + std::to_string(seed));
    fs::remove_all(dir);
    test::write_tiny_model(dir.string(), test::tiny_config("LlamaForCausalLM", "llama"), TensorDType::BF16, seed);
    model = Model::load(dir.string());
  }
  ~Tiny() { fs::remove_all(dir); }
};

std::vector<int32_t> random_ids(size_t n, int vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int32_t> ids(n);
  for (auto& x : ids) x = static_cast<int32_t>(rng() % vocab);
  return ids;
}

// Logits of the whole window in one forward (positions 0..ctx-1), BOS substituted if given.
std::vector<float> full_window(const Model& m, std::span<const int32_t> ids, int ctx, int64_t w,
                               std::optional<int32_t> bos) {
  std::vector<int32_t> t(ids.begin() + w * ctx, ids.begin() + (w + 1) * ctx);
  if (bos) t[0] = *bos;
  Session s(m, ctx);
  std::vector<float> logits;
  s.forward(t, logits, true);
  return logits;
}

double naive_ppl(const Model& m, std::span<const int32_t> ids, int ctx, int64_t chunks, std::optional<int32_t> bos) {
  const int64_t V = m.config().vocab_size;
  double nll = 0;
  int64_t n = 0;
  for (int64_t w = 0; w < chunks; ++w) {
    auto l = full_window(m, ids, ctx, w, bos);
    for (int j = ctx / 2; j < ctx - 1; ++j, ++n) nll -= token_logprob(l.data() + j * V, V, ids[w * ctx + j + 1]);
  }
  return std::exp(nll / n);
}
}  // namespace

TEST(LlamaPerplexity, WindowsLayout) {
  std::vector<int32_t> ids(100);
  for (int i = 0; i < 100; ++i) ids[i] = i;
  auto w = llama_windows(ids, 16, std::nullopt);
  EXPECT_EQ(w.chunks, 6);  // 100 / 16, the rest dropped
  EXPECT_EQ(w.first(), 8);
  EXPECT_EQ(w.scored_per_chunk(), 7);  // predicts tokens 9..15 of each window
  EXPECT_EQ(w.target(0, 0), 9);
  EXPECT_EQ(w.target(2, 6), 2 * 16 + 15);
  EXPECT_EQ(llama_windows(ids, 16, std::nullopt, 2).chunks, 2);
  EXPECT_THROW(llama_windows(std::span<const int32_t>(ids).first(31), 16, std::nullopt), Error);  // < 2 * ctx
  EXPECT_THROW(llama_windows(ids, 2, std::nullopt), Error);
}

TEST(LlamaPerplexity, MatchesNaiveFullWindowComputation) {
  Tiny t(21);
  const int V = static_cast<int>(t.model->config().vocab_size);
  auto ids = random_ids(70, V, 3);
  for (std::optional<int32_t> bos : {std::optional<int32_t>(), std::optional<int32_t>(1)}) {
    auto win = llama_windows(ids, 16, bos);
    ASSERT_EQ(win.chunks, 4);
    int calls = 0;
    auto r = llama_perplexity(*t.model, win, [&](int64_t done, int64_t total) {
      EXPECT_EQ(total, 4);
      EXPECT_EQ(done, ++calls);
      return true;
    });
    EXPECT_EQ(r.chunks, 4);
    EXPECT_EQ(r.tokens, 4 * 7);
    const double ref = naive_ppl(*t.model, ids, 16, 4, bos);
    EXPECT_NEAR(r.ppl, ref, 1e-4 * ref) << (bos ? "with BOS" : "without BOS");
    EXPECT_GT(r.ppl_err, 0);
    EXPECT_NEAR(r.running_ppl.back(), r.ppl, 1e-9 * r.ppl);
    // Stopping early: the result covers the windows done.
    auto part = llama_perplexity(*t.model, win, [](int64_t done, int64_t) { return done < 2; });
    EXPECT_EQ(part.chunks, 2);
    EXPECT_NEAR(part.ppl, naive_ppl(*t.model, ids, 16, 2, bos), 1e-4 * part.ppl);
  }
  // BOS substitution changes the result (the first token of each window is replaced).
  EXPECT_NE(naive_ppl(*t.model, ids, 16, 4, std::nullopt), naive_ppl(*t.model, ids, 16, 4, 1));
}

TEST(KlDivergence, TokenKldAgainstDirectFormula) {
  std::mt19937 rng(9);
  std::normal_distribution<float> nd(0, 3);
  const int V = 50;
  std::vector<float> a(V), b(V);
  for (int j = 0; j < V; ++j) a[j] = nd(rng), b[j] = nd(rng);
  auto e = [](float x) { return std::exp(static_cast<double>(x)); };
  TokenKld self = token_kld(a.data(), a.data(), V, 7);
  EXPECT_EQ(self.kld, 0.0);
  EXPECT_TRUE(self.same_top);
  EXPECT_EQ(self.p_diff, 0.0);
  EXPECT_EQ(self.nll, self.nll_base);
  TokenKld t = token_kld(a.data(), b.data(), V, 7);
  double za = 0, zb = 0;
  for (int j = 0; j < V; ++j) za += e(a[j]), zb += e(b[j]);
  double kld = 0;
  for (int j = 0; j < V; ++j) kld += e(a[j]) / za * (std::log(e(a[j]) / za) - std::log(e(b[j]) / zb));
  EXPECT_NEAR(t.kld, kld, 1e-9);
  EXPECT_GT(t.kld, 0);
  EXPECT_NEAR(t.nll, -std::log(e(b[7]) / zb), 1e-9);
  EXPECT_NEAR(t.nll_base, -std::log(e(a[7]) / za), 1e-9);
  EXPECT_NEAR(t.p_diff, e(b[7]) / zb - e(a[7]) / za, 1e-12);
  EXPECT_EQ(t.same_top, std::max_element(a.begin(), a.end()) - a.begin() == std::max_element(b.begin(), b.end()) - b.begin());
}

TEST(KlDivergence, StatisticsOnHandMadeValues) {
  KldAccumulator acc;
  for (int i = 0; i <= 100; ++i) {
    TokenKld t;
    t.kld = i / 100.0;
    t.nll = 2.0 + (i % 2) * 0.5;
    t.nll_base = 2.0;
    t.p_diff = (i % 2) ? 0.1 : -0.1;
    t.same_top = i < 75;
    acc.add(t);
  }
  KldResult r = acc.result();
  EXPECT_EQ(r.tokens, 101);
  EXPECT_NEAR(r.kld_mean.value, 0.5, 1e-12);
  EXPECT_NEAR(r.kld_median, 0.5, 1e-6);
  EXPECT_NEAR(r.kld_p99, 0.99, 1e-6);   // 0.99 * 100 = index 99
  EXPECT_NEAR(r.kld_p999, 0.999, 1e-6); // interpolated between 0.99 and 1.00
  EXPECT_NEAR(r.kld_max, 1.0, 1e-7);
  EXPECT_NEAR(r.same_top.value, 75.0 / 101, 1e-12);
  EXPECT_NEAR(r.same_top.err, std::sqrt(75.0 / 101 * 26.0 / 101 / 100), 1e-12);
  EXPECT_NEAR(r.p_diff_rms.value, 0.1, 1e-7);
  EXPECT_NEAR(r.ppl_base.value, std::exp(2.0), 1e-9);
  EXPECT_NEAR(r.ppl.value, std::exp(2.0 + 0.5 * 50 / 101.0), 1e-9);
  // The uncertainty of the mean KLD: sample standard deviation / sqrt(n).
  double var = 0;
  for (int i = 0; i <= 100; ++i) var += (i / 100.0 - 0.5) * (i / 100.0 - 0.5);
  EXPECT_NEAR(r.kld_mean.err, std::sqrt(var / 101 / 100), 1e-9);
}

TEST(KlDivergence, ModelAgainstItselfIsZero) {
  Tiny t(22);
  const int V = static_cast<int>(t.model->config().vocab_size);
  auto ids = random_ids(50, V, 4);
  auto win = llama_windows(ids, 16, std::nullopt);
  KldResult r = kl_divergence(*t.model, *t.model, win);
  EXPECT_EQ(r.chunks, 3);
  EXPECT_EQ(r.tokens, 3 * 7);
  EXPECT_EQ(r.kld_mean.value, 0.0);
  EXPECT_EQ(r.kld_max, 0.0);
  EXPECT_EQ(r.same_top.value, 1.0);
  EXPECT_EQ(r.p_diff_rms.value, 0.0);
  EXPECT_NEAR(r.ppl_ratio.value, 1.0, 1e-12);
  EXPECT_NEAR(r.ppl.value, llama_perplexity(*t.model, win).ppl, 1e-9 * r.ppl.value);
}

TEST(KlDivergence, TwoModelsAgainstDirectSum) {
  Tiny a(23), b(24);
  const int64_t V = a.model->config().vocab_size;
  auto ids = random_ids(40, static_cast<int>(V), 5);
  auto win = llama_windows(ids, 16, std::nullopt);
  KldResult r = kl_divergence(*a.model, *b.model, win);
  double sum = 0;
  int64_t n = 0, same = 0;
  for (int64_t w = 0; w < win.chunks; ++w) {
    auto la = full_window(*a.model, ids, 16, w, std::nullopt), lb = full_window(*b.model, ids, 16, w, std::nullopt);
    for (int j = 8; j < 15; ++j, ++n) {
      TokenKld k = token_kld(la.data() + j * V, lb.data() + j * V, V, ids[w * 16 + j + 1]);
      sum += k.kld;
      same += k.same_top;
    }
  }
  EXPECT_EQ(r.tokens, n);
  EXPECT_NEAR(r.kld_mean.value, sum / n, 1e-4 * sum / n);
  EXPECT_GT(r.kld_mean.value, 0.01);  // two random models disagree
  EXPECT_NEAR(r.same_top.value, static_cast<double>(same) / n, 1e-12);
  // Different vocabularies are refused.
  fs::path d = fs::temp_directory_path() / ("upg_kld_v_" + std::to_string(::getpid()));
  auto cfg = test::tiny_config("LlamaForCausalLM", "llama");
  cfg["vocab_size"] = 100;
  test::write_tiny_model(d.string(), cfg, TensorDType::BF16, 1);
  auto other = Model::load(d.string());
  EXPECT_THROW(kl_divergence(*a.model, *other, win), Error);
  fs::remove_all(d);
}

// refA, the first 2 windows of WikiText-2 with llama.cpp's method, against the naive computation.
TEST(LlamaPerplexity, RefAShortText) {
  UPG_NEED_SHARED_DATA(shared);
  const std::string dir = shared + "/models/refA-phi3-26m";
  auto model = Model::load(dir);
  Tokenizer tok = Tokenizer::from_dir(dir);
  EXPECT_FALSE(tok.add_bos());  // refA's tokenizer adds no BOS: windows keep their first token
  std::string text = read_text_file(shared + "/text/wiki.test.raw").substr(0, 12000);
  auto ids = llama_perplexity_tokens(tok, text);
  ASSERT_GE(ids.size(), 1024u);
  auto win = llama_windows(ids, 512, std::nullopt, 2);
  auto r = llama_perplexity(*model, win);
  EXPECT_EQ(r.tokens, 2 * 255);
  const double ref = naive_ppl(*model, ids, 512, 2, std::nullopt);
  EXPECT_NEAR(r.ppl, ref, 1e-4 * ref);
  EXPECT_GT(r.ppl, 20);  // a trained model: far below the vocabulary size (8192)
  EXPECT_LT(r.ppl, 1000);
  std::printf("refA llama.cpp-method PPL on the first 2 windows: %.4f +/- %.4f\n", r.ppl, r.ppl_err);
}
