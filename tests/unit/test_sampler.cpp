#include <cmath>
#include <map>
#include <random>

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
