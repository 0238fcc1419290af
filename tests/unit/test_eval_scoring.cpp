// Log-likelihood scoring core (eval/loglikelihood, eval/multiple_choice): the shared-context
// scorer equals scoring context + continuation from scratch and the double-precision reference
// forward pass on a tiny random model; lm-eval's context/continuation split (trailing whitespace
// moved to the continuation, continuation = tail of the joint encoding) on a hand-written
// byte-level tokenizer; left truncation; pred / pred_norm arithmetic; bad input.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <random>

#include "base/error.h"
#include "eval/loglikelihood.h"
#include "eval/multiple_choice.h"
#include "test_util.h"
#include "tiny_model.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/tokenizer.h"

using namespace upg;
namespace fs = std::filesystem;

namespace {
constexpr int kVocab = 300;

// A byte-level BPE tokenizer: ids 0..255 are the bytes, 256 "ab", 257 "Ġab", 258 "ĠA", 259 "Ġyes".
std::string tiny_tokenizer_json() {
  nlohmann::json vocab = nlohmann::json::object();
  int id = 0;
  for (int b = 0; b < 256; ++b) vocab[byte_level::encode(std::string(1, static_cast<char>(b)))] = id++;
  const std::string G = "\xC4\xA0";  // 'Ġ' = space
  for (const std::string& t : {std::string("ab"), G + "ab", G + "A", G + "y", G + "ye", G + "yes"}) vocab[t] = id++;
  nlohmann::json j = {
      {"added_tokens", nlohmann::json::array()},
      {"normalizer", nullptr},
      {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}},
      {"post_processor", nullptr},
      {"decoder", {{"type", "ByteLevel"}}},
      {"model",
       {{"type", "BPE"},
        {"vocab", vocab},
        {"merges", {"a b", G + " ab", G + " A", G + " y", G + "y e", G + "ye s"}}}}};
  return j.dump();
}

struct TinyModel {
  fs::path dir;
  test::TinyWeights w;
  std::unique_ptr<Model> model;
  explicit TinyModel(uint32_t seed) {
    dir = fs::temp_directory_path() / ("upg_eval_" + std::to_string(::getpid()) + "_" + std::to_string(seed));
    fs::remove_all(dir);
    auto cfg = test::tiny_config("Phi3ForCausalLM", "phi3");
    cfg["vocab_size"] = kVocab;
    w = test::write_tiny_model(dir.string(), cfg, TensorDType::BF16, seed);
    model = Model::load(dir.string());
  }
  ~TinyModel() { fs::remove_all(dir); }
};

// Sum of log-probs of cont after ctx, from one fresh forward over ctx + cont[:-1].
ContinuationScore from_scratch(const Model& m, const std::vector<int32_t>& ctx, const std::vector<int32_t>& cont) {
  Session s(m, 64);
  std::vector<int32_t> in = ctx;
  in.insert(in.end(), cont.begin(), cont.end() - 1);
  std::vector<float> logits;
  s.forward(in, logits, true);
  ContinuationScore r;
  r.tokens = static_cast<int>(cont.size());
  for (size_t i = 0; i < cont.size(); ++i) {
    bool am = false;
    r.logprob += token_logprob(logits.data() + (ctx.size() - 1 + i) * kVocab, kVocab, cont[i], &am);
    r.greedy = r.greedy && am;
  }
  return r;
}
}  // namespace

TEST(EvalScoring, TokenLogprobIsLogSoftmaxAndArgmax) {
  std::vector<float> l = {1.0f, 3.0f, 2.0f, 3.0f};
  const double z = std::log(std::exp(1.0) + 2 * std::exp(3.0) + std::exp(2.0));
  bool am = false;
  EXPECT_NEAR(token_logprob(l.data(), 4, 2, &am), 2.0 - z, 1e-12);
  EXPECT_FALSE(am);
  EXPECT_NEAR(token_logprob(l.data(), 4, 1, &am), 3.0 - z, 1e-12);
  EXPECT_TRUE(am);  // first of the tied maxima, as torch.argmax
  token_logprob(l.data(), 4, 3, &am);
  EXPECT_FALSE(am);
}

TEST(EvalScoring, SharedContextEqualsFromScratch) {
  TinyModel tm(11);
  std::mt19937 rng(5);
  std::vector<int32_t> ctx(9);
  for (auto& x : ctx) x = static_cast<int32_t>(rng() % kVocab);
  std::vector<std::vector<int32_t>> conts = {{17}, {3, 250, 99}, {42, 42, 7, 180, 1}, {5, 6}};
  Session s(*tm.model, 64);
  auto got = score_continuations(s, ctx, conts);
  ASSERT_EQ(got.size(), conts.size());
  for (size_t c = 0; c < conts.size(); ++c) {
    auto ref = from_scratch(*tm.model, ctx, conts[c]);
    EXPECT_EQ(got[c].tokens, static_cast<int>(conts[c].size()));
    EXPECT_NEAR(got[c].logprob, ref.logprob, 1e-3 * std::max(1.0, std::fabs(ref.logprob))) << "continuation " << c;
    EXPECT_EQ(got[c].greedy, ref.greedy) << "continuation " << c;
    EXPECT_LT(got[c].logprob, 0.0);
  }
  // Against the naive double-precision forward pass (independent of the engine's kernels).
  std::vector<int32_t> all = ctx;
  all.insert(all.end(), conts[2].begin(), conts[2].end() - 1);
  const ModelConfig& cfg = tm.model->config();
  auto ref = test::reference_logits(cfg, tm.w, all);
  double lp = 0;
  for (size_t i = 0; i < conts[2].size(); ++i) {
    const double* row = ref.data() + (ctx.size() - 1 + i) * kVocab;
    double mx = *std::max_element(row, row + kVocab), z = 0;
    for (int j = 0; j < kVocab; ++j) z += std::exp(row[j] - mx);
    lp += row[conts[2][i]] - mx - std::log(z);
  }
  EXPECT_NEAR(got[2].logprob, lp, 2e-3 * std::fabs(lp));
  // A greedy continuation: take the argmax token at each step.
  std::vector<int32_t> greedy_cont;
  {
    Session g(*tm.model, 64);
    std::vector<float> logits;
    g.forward(ctx, logits, false);
    for (int i = 0; i < 3; ++i) {
      int32_t best = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
      greedy_cont.push_back(best);
      g.forward({&best, 1}, logits, false);
    }
  }
  auto g = score_continuations(s, ctx, {greedy_cont});
  EXPECT_TRUE(g[0].greedy);
}

TEST(EvalScoring, BadInput) {
  TinyModel tm(12);
  Session s(*tm.model, 16);
  EXPECT_THROW(score_continuations(s, {}, {{1}}), Error);
  std::vector<int32_t> ctx = {1, 2, 3};
  EXPECT_THROW(score_continuations(s, ctx, {{}}), Error);
  EXPECT_THROW(score_continuations(s, ctx, {{kVocab}}), Error);
  EXPECT_THROW(score_continuations(s, ctx, {std::vector<int32_t>(15, 1)}), Error);  // 3 + 15 - 1 > 16
  EXPECT_NO_THROW(score_continuations(s, ctx, {std::vector<int32_t>(14, 1)}));     // 3 + 14 - 1 = 16
}

TEST(EvalScoring, EncodeRequestMovesTrailingWhitespace) {
  Tokenizer tok = Tokenizer::from_json_strings(tiny_tokenizer_json());
  const int32_t G_ab = 257, G_A = 258, G_yes = 261;
  ASSERT_EQ(tok.encode(" ab", false), std::vector<int32_t>{G_ab});
  ASSERT_EQ(tok.encode(" yes", false), std::vector<int32_t>{G_yes});
  // No trailing space: context tokens are encode(context); the continuation " A" is one token.
  auto r = encode_request(tok, "Answer:", {" A", " yes", " ab"});
  EXPECT_EQ(r.context, tok.encode("Answer:", false));
  EXPECT_EQ(r.continuations[0], std::vector<int32_t>{G_A});
  EXPECT_EQ(r.continuations[1], std::vector<int32_t>{G_yes});
  EXPECT_EQ(r.continuations[2], std::vector<int32_t>{G_ab});
  // Trailing space in the context moves to the continuation (lm-eval _encode_pair): "Answer: " + "ab"
  // is scored as "Answer:" + " ab", so the continuation is the single token " ab".
  auto m = encode_request(tok, "Answer: ", {"ab"});
  EXPECT_EQ(m.context, tok.encode("Answer:", false));
  EXPECT_EQ(m.continuations[0], std::vector<int32_t>{G_ab});
  // Several whitespace characters move too.
  auto n = encode_request(tok, "Q\n \t", {"x"});
  EXPECT_EQ(n.context, tok.encode("Q", false));
  std::vector<int32_t> whole = tok.encode("Q\n \tx", false);
  EXPECT_EQ(n.continuations[0], std::vector<int32_t>(whole.begin() + static_cast<long>(n.context.size()), whole.end()));
  // A continuation that merges into the context's last token adds nothing: an error naming it.
  EXPECT_THROW(encode_request(tok, "xa", {"b"}), Error);
  // Empty context: the prefix token (BOS, else EOS) is needed; this tokenizer has neither.
  EXPECT_THROW(encode_request(tok, "", {"ab"}), Error);
}

TEST(EvalScoring, FitContextTruncatesOnTheLeft) {
  EncodedRequest r;
  r.context = {1, 2, 3, 4, 5, 6, 7, 8};
  r.continuations = {{9}, {10, 11, 12}};
  fit_context(r, 20);
  EXPECT_EQ(r.truncated, 0);
  fit_context(r, 8);  // room for 8 + 1 - 3 = 6 context tokens
  EXPECT_EQ(r.context, (std::vector<int32_t>{3, 4, 5, 6, 7, 8}));
  EXPECT_EQ(r.truncated, 2);
  EXPECT_THROW(fit_context(r, 2), Error);  // the 3-token continuation cannot fit with one context token
}

TEST(EvalScoring, ScoreItemPredAndPredNorm) {
  TinyModel tm(13);
  Tokenizer tok = Tokenizer::from_json_strings(tiny_tokenizer_json());
  Session s(*tm.model, 128);
  McItem item;
  item.id = "t/0";
  item.context = "Question: which?\nAnswer:";
  item.choices = {"ab", "yes", "a much longer answer", "A"};
  item.gold = 2;
  McItemResult r = score_item(s, tok, item);
  ASSERT_EQ(r.logliks.size(), 4u);
  EXPECT_EQ(r.id, "t/0");
  EXPECT_EQ(r.gold, 2);
  EXPECT_EQ(r.tokens[0], 1);  // " ab"
  EXPECT_EQ(r.tokens[1], 1);  // " yes"
  EXPECT_EQ(r.tokens[3], 1);  // " A"
  EXPECT_EQ(r.pred, argmax_first(r.logliks));
  std::vector<double> norm;
  const size_t lens[4] = {2, 3, 20, 1};
  for (int i = 0; i < 4; ++i) norm.push_back(r.logliks[i] / static_cast<double>(lens[i]));
  EXPECT_EQ(r.pred_norm, argmax_first(norm));
  // The serialised result round-trips.
  McItemResult back = mc_item_result_from_json(to_json(r));
  EXPECT_EQ(back.id, r.id);
  EXPECT_EQ(back.pred, r.pred);
  EXPECT_EQ(back.logliks, r.logliks);
  EXPECT_EQ(back.greedy, r.greedy);
  EXPECT_THROW(mc_item_result_from_json(nlohmann::json{{"id", "x"}}), Error);
  item.gold = 4;
  EXPECT_THROW(score_item(s, tok, item), Error);
}

TEST(EvalScoring, ArgmaxFirstBreaksTiesLikeNumpy) {
  EXPECT_EQ(argmax_first({-3.0, -1.0, -1.0, -2.0}), 1);
  EXPECT_EQ(argmax_first({0.0}), 0);
  EXPECT_THROW(argmax_first({}), Error);
}
