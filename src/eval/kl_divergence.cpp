#include "eval/kl_divergence.h"

#include <algorithm>
#include <cmath>

#include "base/error.h"

namespace upg {

TokenKld token_kld(const float* base_logits, const float* logits, int64_t vocab, int32_t target) {
  // log-sum-exp of both rows in double; argmax = first maximum.
  int64_t ib = 0, im = 0;
  for (int64_t j = 1; j < vocab; ++j) {
    if (base_logits[j] > base_logits[ib]) ib = j;
    if (logits[j] > logits[im]) im = j;
  }
  const double mb = base_logits[ib], mm = logits[im];
  double zb = 0, zm = 0;
  for (int64_t j = 0; j < vocab; ++j) {
    zb += std::exp(base_logits[j] - mb);
    zm += std::exp(logits[j] - mm);
  }
  const double lzb = mb + std::log(zb), lzm = mm + std::log(zm);
  double kld = 0;
  for (int64_t j = 0; j < vocab; ++j) {
    const double lpb = base_logits[j] - lzb, lpm = logits[j] - lzm;
    kld += std::exp(lpb) * (lpb - lpm);
  }
  TokenKld t;
  t.kld = kld;
  t.nll = lzm - logits[target];
  t.nll_base = lzb - base_logits[target];
  t.p_diff = std::exp(-t.nll) - std::exp(-t.nll_base);
  t.same_top = ib == im;
  return t;
}

void KldAccumulator::add(const TokenKld& t) {
  sum_nll_ += t.nll;
  sum_nll2_ += t.nll * t.nll;
  sum_nll_base_ += t.nll_base;
  sum_nll_base2_ += t.nll_base * t.nll_base;
  sum_nll_nll_base_ += t.nll * t.nll_base;
  sum_kld_ += t.kld;
  sum_kld2_ += t.kld * t.kld;
  sum_p_diff_ += t.p_diff;
  const double d2 = t.p_diff * t.p_diff;
  sum_p_diff2_ += d2;
  sum_p_diff4_ += d2 * d2;
  same_top_ += t.same_top;
  ++count_;
  kld_values_.push_back(static_cast<float>(t.kld));
  p_diff_values_.push_back(static_cast<float>(t.p_diff));
}

namespace {
// llama.cpp's mean_and_uncertainty: standard error only when count > 10.
ValueStat mean_unc(double sum, double sum2, int64_t count) {
  if (count < 1) return {};
  const double f = sum / count;
  double df = sum2 / count - f * f;
  df = df > 0 && count > 10 ? std::sqrt(df / (count - 1)) : 0.0;
  return {f, df};
}
double covariance(double sa, double sb, double sab, int64_t count) {
  if (count < 10) return 0.0;
  return (sab / count - (sa / count) * (sb / count)) / (count - 1);
}
double percentile(const std::vector<float>& sorted, double fraction) {
  if (fraction <= 0) return sorted.front();
  if (fraction >= 1) return sorted.back();
  const double p = fraction * (sorted.size() - 1);
  const size_t ip = static_cast<size_t>(p);
  const double f = p - ip;
  return (1 - f) * sorted[ip] + f * sorted[std::min(ip + 1, sorted.size() - 1)];
}
double median(const std::vector<float>& s) {
  const size_t n = s.size();
  return n % 2 == 0 ? 0.5 * (s[n / 2] + s[n / 2 - 1]) : s[n / 2];
}
}  // namespace

KldResult KldAccumulator::result() const {
  KldResult r;
  r.tokens = count_;
  if (count_ == 0) return r;
  const ValueStat lp = mean_unc(sum_nll_, sum_nll2_, count_), lpb = mean_unc(sum_nll_base_, sum_nll_base2_, count_);
  r.ppl = {std::exp(lp.value), std::exp(lp.value) * lp.err};
  r.ppl_base = {std::exp(lpb.value), std::exp(lpb.value) * lpb.err};
  const double cov = covariance(sum_nll_, sum_nll_base_, sum_nll_nll_base_, count_);
  r.ln_ppl_correlation = lp.err > 0 && lpb.err > 0 ? cov / (lp.err * lpb.err) : 0.0;
  r.ln_ppl_ratio.value = lp.value - lpb.value;
  r.ln_ppl_ratio.err = std::sqrt(std::max(0.0, lp.err * lp.err + lpb.err * lpb.err - 2.0 * cov));
  r.ppl_ratio = {std::exp(r.ln_ppl_ratio.value), std::exp(r.ln_ppl_ratio.value) * r.ln_ppl_ratio.err};
  const double ppl_cov = r.ppl.value * r.ppl_base.value * cov;
  r.ppl_diff = {r.ppl.value - r.ppl_base.value,
                std::sqrt(std::max(0.0, r.ppl.err * r.ppl.err + r.ppl_base.err * r.ppl_base.err - 2.0 * ppl_cov))};
  r.kld_mean = mean_unc(sum_kld_, sum_kld2_, count_);
  std::vector<float> k = kld_values_, d = p_diff_values_;
  std::sort(k.begin(), k.end());
  std::sort(d.begin(), d.end());
  r.kld_median = median(k);
  r.kld_p90 = percentile(k, 0.90);
  r.kld_p99 = percentile(k, 0.99);
  r.kld_p999 = percentile(k, 0.999);
  r.kld_max = k.back();
  r.kld_min = k.front();
  r.p_diff_mean = mean_unc(sum_p_diff_, sum_p_diff2_, count_);
  r.p_diff_max = d.back();
  r.p_diff_min = d.front();
  const ValueStat mse = mean_unc(sum_p_diff2_, sum_p_diff4_, count_);
  r.p_diff_rms.value = std::sqrt(mse.value);
  r.p_diff_rms.err = r.p_diff_rms.value > 0 ? 0.5 / r.p_diff_rms.value * mse.err : 0.0;
  const double st = static_cast<double>(same_top_) / count_;
  r.same_top = {st, count_ > 1 ? std::sqrt(st * (1 - st) / (count_ - 1)) : 0.0};
  return r;
}

KldResult kl_divergence(const Model& base, const Model& model, const LlamaWindows& win,
                        const std::function<bool(int64_t, int64_t, const KldAccumulator&)>& progress,
                        const TensorParallelOptions& tp) {
  const int64_t vocab = model.config().vocab_size;
  UPG_CHECK(base.config().vocab_size == vocab, "kld: the base model has a vocabulary of ", base.config().vocab_size,
            " tokens but the model has ", vocab);
  Session sb(base, win.ctx, std::nullopt, 0, 0, tp), sm(model, win.ctx, std::nullopt, 0, 0, tp);
  const int n = win.scored_per_chunk();
  std::vector<float> lb, lm;
  std::vector<TokenKld> t(static_cast<size_t>(n));
  KldAccumulator acc;
  int64_t done = 0;
  for (int64_t w = 0; w < win.chunks; ++w) {
    llama_window_logits(sb, win, w, lb);
    llama_window_logits(sm, win, w, lm);
#pragma omp parallel for schedule(static)
    for (int i = 0; i < n; ++i)
      t[i] = token_kld(lb.data() + static_cast<size_t>(i) * vocab, lm.data() + static_cast<size_t>(i) * vocab, vocab,
                       win.target(w, i));
    for (const auto& x : t) acc.add(x);
    ++done;
    if (progress && !progress(done, win.chunks, acc)) break;
  }
  KldResult r = acc.result();
  r.chunks = done;
  return r;
}

nlohmann::json to_json(const KldResult& r) {
  auto vs = [](const ValueStat& v) { return nlohmann::json{{"value", v.value}, {"err", v.err}}; };
  return {{"chunks", r.chunks},
          {"tokens", r.tokens},
          {"ppl", vs(r.ppl)},
          {"ppl_base", vs(r.ppl_base)},
          {"ln_ppl_ratio", vs(r.ln_ppl_ratio)},
          {"ppl_ratio", vs(r.ppl_ratio)},
          {"ppl_diff", vs(r.ppl_diff)},
          {"ln_ppl_correlation", r.ln_ppl_correlation},
          {"kld_mean", vs(r.kld_mean)},
          {"kld_median", r.kld_median},
          {"kld_p90", r.kld_p90},
          {"kld_p99", r.kld_p99},
          {"kld_p999", r.kld_p999},
          {"kld_max", r.kld_max},
          {"kld_min", r.kld_min},
          {"p_diff_mean", vs(r.p_diff_mean)},
          {"p_diff_rms", vs(r.p_diff_rms)},
          {"p_diff_max", r.p_diff_max},
          {"p_diff_min", r.p_diff_min},
          {"same_top", vs(r.same_top)}};
}

}  // namespace upg
