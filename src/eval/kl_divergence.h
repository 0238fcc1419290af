// KL divergence of a model (e.g. compressed) from a base model (the original), with the statistics
// of llama.cpp's `llama-perplexity --kl-divergence` (tools/perplexity/perplexity.cpp), on the
// windows of its perplexity method (eval/llama_perplexity.h: the second half of each ctx window).
//
// Per scored token, with P = softmax(base logits), Q = softmax(model logits), t = the actual next
// token:  KLD = sum_j P_j (log P_j - log Q_j);  nll = -log Q_t;  nll_base = -log P_t;
// Δp = Q_t - P_t;  same top = argmax P == argmax Q.
// Reported (as llama.cpp): mean KLD +- its standard error, median / 99% / 99.9% / max KLD (sorted,
// linear interpolation at fraction * (n - 1)); same-top-p % +- sqrt(p(1-p)/(n-1)); PPL of both
// models with uncertainties; ln(PPL ratio) with the covariance term; RMS of Δp +- uncertainty.
// Differences from llama.cpp: everything here is computed from exact fp32 logits in double
// precision (llama.cpp stores base log-probs quantized to 16 bits and skips terms with
// log P_j < -16), so a model compared with itself gives exactly KLD 0 and 100% same top.
//
// Both models run window by window in lockstep; no logits are stored beyond one window.
#pragma once
#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <vector>

#include "eval/llama_perplexity.h"

namespace upg {

struct TokenKld {
  double kld = 0, nll = 0, nll_base = 0, p_diff = 0;
  bool same_top = false;
};

// One scored token from the two logits rows (vocab floats each).
TokenKld token_kld(const float* base_logits, const float* logits, int64_t vocab, int32_t target);

struct ValueStat {
  double value = 0, err = 0;
};

struct KldResult {
  int64_t chunks = 0, tokens = 0;
  ValueStat ppl, ppl_base, ln_ppl_ratio, ppl_ratio, ppl_diff;
  double ln_ppl_correlation = 0;
  ValueStat kld_mean;
  double kld_median = 0, kld_p90 = 0, kld_p99 = 0, kld_p999 = 0, kld_max = 0, kld_min = 0;
  ValueStat p_diff_mean, p_diff_rms, same_top;  // fractions (0..1), not percent
  double p_diff_max = 0, p_diff_min = 0;
};

// Accumulates TokenKld values (keeps the per-token KLD and Δp for the percentiles: 8 bytes a token).
class KldAccumulator {
 public:
  void add(const TokenKld& t);
  int64_t count() const { return count_; }
  KldResult result() const;

 private:
  double sum_nll_ = 0, sum_nll2_ = 0, sum_nll_base_ = 0, sum_nll_base2_ = 0, sum_nll_nll_base_ = 0;
  double sum_kld_ = 0, sum_kld2_ = 0, sum_p_diff_ = 0, sum_p_diff2_ = 0, sum_p_diff4_ = 0;
  int64_t same_top_ = 0, count_ = 0;
  std::vector<float> kld_values_, p_diff_values_;
};

// Runs base and model over the same windows in lockstep. progress(done, total, acc) after each
// window; returning false stops early (the result covers the windows done). Throws Error when
// the two models' vocabulary sizes differ.
// tp: tensor parallelism of both Sessions (runtime/tensor_parallel.h; the default is one Engine each).
KldResult kl_divergence(const Model& base, const Model& model, const LlamaWindows& win,
                        const std::function<bool(int64_t, int64_t, const KldAccumulator&)>& progress = nullptr,
                        const TensorParallelOptions& tp = {});

nlohmann::json to_json(const KldResult& r);

}  // namespace upg
