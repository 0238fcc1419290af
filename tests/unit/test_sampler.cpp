#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <random>
#include <span>

#include "base/error.h"
#include "runtime/sampler.h"
#include "test_util.h"

using namespace upg;

namespace {
SamplingParams plain(float temp) {
  SamplingParams p;
  p.temperature = temp;
  p.top_k = 0;
  p.top_p = 1.0f;
  p.min_p = 0.0f;
  p.repeat_penalty = 1.0f;
  p.seed = 42;
  return p;
}
}  // namespace

TEST(Sampler, GreedyIsArgmaxWithFirstIndexOnTies) {
  Sampler s(plain(0.0f));
  std::vector<float> l = {0.1f, 3.0f, -1.0f, 3.0f};
  EXPECT_EQ(s.sample(l, {}), 1);
}

TEST(Sampler, TemperatureOneMatchesSoftmaxFrequencies) {
  Sampler s(plain(1.0f));
  std::vector<float> base = {std::log(0.5f), std::log(0.3f), std::log(0.2f)};
  std::map<int, int> counts;
  const int n = 200000;
  for (int i = 0; i < n; ++i) {
    auto l = base;
    counts[s.sample(l, {})]++;
  }
  EXPECT_NEAR(counts[0] / double(n), 0.5, 0.01);
  EXPECT_NEAR(counts[1] / double(n), 0.3, 0.01);
  EXPECT_NEAR(counts[2] / double(n), 0.2, 0.01);
}

TEST(Sampler, TopKOneIsGreedy) {
  auto p = plain(5.0f);
  p.top_k = 1;
  Sampler s(p);
  std::mt19937 rng(7);
  std::normal_distribution<float> d;
  for (int i = 0; i < 100; ++i) {
    std::vector<float> l(50);
    for (auto& x : l) x = d(rng);
    auto copy = l;
    EXPECT_EQ(s.sample(l, {}), argmax(copy));
  }
}

TEST(Sampler, TopPKeepsSmallestNucleus) {
  auto p = plain(1.0f);
  p.top_p = 0.7f;  // probabilities 0.5, 0.3, 0.2: nucleus is {0, 1}
  Sampler s(p);
  std::vector<float> base = {std::log(0.5f), std::log(0.3f), std::log(0.2f)};
  std::map<int, int> counts;
  for (int i = 0; i < 20000; ++i) {
    auto l = base;
    counts[s.sample(l, {})]++;
  }
  EXPECT_EQ(counts[2], 0);
  EXPECT_NEAR(counts[0] / 20000.0, 0.5 / 0.8, 0.02);
}

TEST(Sampler, MinPDropsUnlikelyTokens) {
  auto p = plain(1.0f);
  p.min_p = 0.5f;  // keeps tokens with p >= 0.25 (0.5 * 0.5)
  Sampler s(p);
  std::vector<float> base = {std::log(0.5f), std::log(0.3f), std::log(0.2f)};
  for (int i = 0; i < 5000; ++i) {
    auto l = base;
    EXPECT_NE(s.sample(l, {}), 2);
  }
}

TEST(Sampler, RepetitionPenaltyFollowsHfRule) {
  auto p = plain(0.0f);
  p.repeat_penalty = 2.0f;
  Sampler s(p);
  std::vector<float> l = {3.0f, 2.0f, -1.0f};
  std::vector<int32_t> hist = {0, 2};
  EXPECT_EQ(s.sample(l, hist), 1);  // 3 -> 1.5 < 2
  EXPECT_FLOAT_EQ(l[0], 1.5f);
  EXPECT_FLOAT_EQ(l[2], -2.0f);
}

TEST(Sampler, PresenceAndFrequencyPenaltiesCountGeneratedTokensOnly) {
  auto p = plain(0.0f);
  p.presence_penalty = 0.5f;
  p.frequency_penalty = 0.25f;
  Sampler s(p);
  std::vector<float> l = {3.0f, 2.9f, 1.0f, 0.0f};
  std::vector<int32_t> hist = {2, 2, 0, 0, 0, 1};  // prompt {2, 2}, generated {0, 0, 0, 1}
  std::vector<int32_t> gen(hist.begin() + 2, hist.end());
  EXPECT_EQ(s.sample(l, hist, gen), 1);
  EXPECT_FLOAT_EQ(l[0], 3.0f - 0.5f - 0.75f);  // generated 3 times
  EXPECT_FLOAT_EQ(l[1], 2.9f - 0.5f - 0.25f);  // once
  EXPECT_FLOAT_EQ(l[2], 1.0f);                  // only in the prompt: untouched
  EXPECT_FLOAT_EQ(l[3], 0.0f);
}

TEST(Sampler, SameSeedSameDraws) {
  std::vector<float> base(100);
  for (int i = 0; i < 100; ++i) base[i] = std::sin(i * 0.37f);
  Sampler a(plain(1.0f)), b(plain(1.0f));
  for (int i = 0; i < 100; ++i) {
    auto la = base, lb = base;
    EXPECT_EQ(a.sample(la, {}), b.sample(lb, {}));
  }
}

TEST(Sampler, BadParametersNameTheFlag) {
  auto p = plain(1.0f);
  p.top_p = 1.5f;
  try {
    Sampler s(p);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--top-p"), std::string::npos);
  }
  p = plain(-1.0f);
  EXPECT_THROW(Sampler s(p), Error);
}

TEST(Sampler, DefaultsComeFromGenerationConfigThenTheUser) {
  // No generation_config.json: llama.cpp's sampling defaults, no penalty.
  SamplingParams d = resolve_sampling(std::nullopt, {});
  EXPECT_FLOAT_EQ(d.temperature, 0.8f);
  EXPECT_EQ(d.top_k, 40);
  EXPECT_FLOAT_EQ(d.repeat_penalty, 1.0f);
  // --temp 0 alone is plain greedy: nothing else alters the logits.
  SamplingOverrides greedy;
  greedy.temperature = 0.0f;
  SamplingParams g = resolve_sampling(std::nullopt, greedy);
  EXPECT_FLOAT_EQ(g.temperature, 0.0f);
  EXPECT_FLOAT_EQ(g.repeat_penalty, 1.0f);
  // The model's file, as transformers reads it.
  SamplingParams m = resolve_sampling(
      std::string(R"({"do_sample": true, "temperature": 0.6, "top_p": 0.9, "top_k": 20, "repetition_penalty": 1.05})"),
      {});
  EXPECT_FLOAT_EQ(m.temperature, 0.6f);
  EXPECT_FLOAT_EQ(m.top_p, 0.9f);
  EXPECT_EQ(m.top_k, 20);
  EXPECT_FLOAT_EQ(m.repeat_penalty, 1.05f);
  EXPECT_FLOAT_EQ(resolve_sampling(std::string(R"({"do_sample": false, "temperature": 0.6})"), {}).temperature, 0.0f);
  // The user's choice wins over the file.
  SamplingOverrides u;
  u.temperature = 1.2f;
  u.repeat_penalty = 1.0f;
  SamplingParams w = resolve_sampling(std::string(R"({"do_sample": false, "repetition_penalty": 1.3})"), u);
  EXPECT_FLOAT_EQ(w.temperature, 1.2f);
  EXPECT_FLOAT_EQ(w.repeat_penalty, 1.0f);
  // Bad files name the problem.
  EXPECT_THROW(resolve_sampling(std::string("{not json"), {}), Error);
  try {
    resolve_sampling(std::string(R"({"temperature": "hot"})"), {});
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("temperature"), std::string::npos);
  }
  EXPECT_THROW(resolve_sampling(std::string(R"({"top_p": 7})"), {}), Error);
}

// ---- Sampling from a row's largest logits (what a GPU sends the host) ------------------------------

namespace {
// Rows with runs of equal values and a few -inf, of spread `scale` (flat: small).
std::vector<float> tied_logits(std::mt19937& g, int64_t n, float scale) {
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = d(g);
  for (int64_t i = 0; i < n / 10; ++i) v[g() % n] = v[g() % n];  // ties
  if (n > 1) v[g() % n] = -INFINITY;
  return v;
}
}  // namespace

TEST(LogitSelect, TopLogitsAreTheLargestInOrderWithTheRowsSum) {
  std::mt19937 g(11);
  for (auto [n, k] : {std::pair<int64_t, int>{1, 1}, {7, 7}, {500, 1}, {500, 40}, {3000, 1024}, {1025, 1024}}) {
    const int64_t rows = 3, ld = n + 5;
    std::vector<float> m(static_cast<size_t>(rows * ld), 99.0f);  // the padding must not count
    for (int64_t r = 0; r < rows; ++r) {
      const auto v = tied_logits(g, n, r == 0 ? 0.01f : 3.0f);
      std::copy(v.begin(), v.end(), m.begin() + r * ld);
    }
    const std::vector<int32_t> pick = {2, 0};
    std::vector<int32_t> ids(pick.size() * k);
    std::vector<float> values(pick.size() * k);
    std::vector<double> sums(pick.size());
    kernels::top_logits(m.data(), ld, pick.data(), 2, n, k, ids.data(), values.data(), sums.data());
    for (size_t i = 0; i < pick.size(); ++i) {
      const float* x = m.data() + pick[i] * ld;
      std::vector<int32_t> order(static_cast<size_t>(n));
      std::iota(order.begin(), order.end(), 0);
      std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return x[a] > x[b]; });
      double sum = 0;
      for (int64_t j = 0; j < n; ++j) sum += std::exp(static_cast<double>(x[j]) - x[order[0]]);
      EXPECT_NEAR(sums[i], sum, 1e-6 * sum) << "n " << n << " row " << pick[i];
      for (int j = 0; j < k; ++j) {
        ASSERT_EQ(ids[i * k + j], order[j]) << "n " << n << " k " << k << " row " << pick[i] << " rank " << j;
        ASSERT_EQ(values[i * k + j], x[order[j]]);
      }
    }
  }
  std::vector<float> one = {1.0f, 2.0f};
  const int32_t row0 = 0;
  int32_t id;
  float val;
  double s;
  EXPECT_THROW(kernels::top_logits(one.data(), 2, &row0, 1, 2, 3, &id, &val, &s), Error);  // k > vocab
}

TEST(LogitSelect, PenaltiesFollowTheSamplersRule) {
  std::vector<float> l = {2.0f, -2.0f, 0.5f, 1.0f};
  const std::vector<LogitPenalty> p = {{0, 0, 0.0f, 2.0f}, {0, 1, 0.0f, 2.0f}, {0, 2, 1.0f, 1.0f}, {0, 3, 1.5f, 2.0f}};
  kernels::penalize_logits(l.data(), 4, p.data(), 4);
  EXPECT_FLOAT_EQ(l[0], 1.0f);    // positive: divided
  EXPECT_FLOAT_EQ(l[1], -4.0f);   // negative: multiplied
  EXPECT_FLOAT_EQ(l[2], -0.5f);   // subtracted only
  EXPECT_FLOAT_EQ(l[3], -1.0f);   // subtracted (to -0.5), then multiplied
}

// For every kind of setting: the token drawn from the candidates (or, when they cannot decide, from
// the whole penalised row) is the token Sampler::sample draws from the whole row, draw after draw.
TEST(Sampler, CandidatesDrawWhatTheWholeRowDraws) {
  std::vector<SamplingParams> cases;
  auto add = [&](float temp, int top_k, float top_p, float min_p, float rp = 1.0f, float pres = 0.0f,
                 float freq = 0.0f) {
    SamplingParams p = plain(temp);
    p.top_k = top_k, p.top_p = top_p, p.min_p = min_p, p.repeat_penalty = rp, p.repeat_last_n = 16;
    p.presence_penalty = pres, p.frequency_penalty = freq;
    cases.push_back(p);
  };
  add(0.0f, 0, 1.0f, 0.0f);                     // greedy
  add(0.0f, 0, 1.0f, 0.0f, 1.3f, 0.5f, 0.25f);  // greedy with penalties
  add(0.8f, 40, 0.95f, 0.05f);                  // llama.cpp's defaults
  add(1.0f, 1, 1.0f, 0.0f);
  add(1.0f, 0, 0.9f, 0.0f);                     // top-p alone: the row's sum
  add(0.7f, 0, 1.0f, 0.1f);                     // min-p alone
  add(1.0f, 0, 1.0f, 0.0f);                     // plain temperature: the whole row
  add(1.0f, 2000, 0.99f, 0.0f);                 // top-k past the candidates
  add(1.2f, 100, 0.9f, 0.02f, 1.3f, 0.5f, 0.25f);
  std::mt19937 g(5);
  int decided = 0, whole = 0;
  for (size_t c = 0; c < cases.size(); ++c) {
    Sampler a(cases[c]), b(cases[c]);
    for (int trial = 0; trial < 60; ++trial) {
      const int64_t V = trial % 3 == 0 ? 50 : 3000;
      const float spread = trial % 4 == 0 ? 0.05f : trial % 4 == 1 ? 1.0f : 6.0f;
      const std::vector<float> logits = tied_logits(g, V, spread);
      std::vector<int32_t> history(g() % 60);
      for (auto& t : history) t = static_cast<int32_t>(g() % V);
      const std::span<const int32_t> generated(history.data() + history.size() / 2, history.size() - history.size() / 2);

      std::vector<float> full = logits;
      const int32_t want = a.sample(full, history, generated);

      std::vector<float> row = logits;
      std::vector<LogitPenalty> pen;
      b.penalties(0, V, history, generated, pen);
      kernels::penalize_logits(row.data(), V, pen.data(), static_cast<int64_t>(pen.size()));
      const int k = b.candidates(V);
      std::vector<int32_t> ids(k);
      std::vector<float> values(k);
      double sum = 0;
      const int32_t row0 = 0;
      kernels::top_logits(row.data(), V, &row0, 1, V, k, ids.data(), values.data(), &sum);
      int32_t got = b.choose(ids, values, V, sum);
      if (got < 0) {
        ++whole;
        got = b.choose(row);
      } else {
        ++decided;
      }
      ASSERT_EQ(got, want) << "case " << c << " trial " << trial << " V " << V << " spread " << spread;
    }
  }
  EXPECT_GT(decided, 300);  // most draws need only the candidates
  EXPECT_GT(whole, 30);     // and the fallback was exercised
}
