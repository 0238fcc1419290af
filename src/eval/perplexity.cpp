#include "eval/perplexity.h"

#include <cmath>

#include "base/error.h"

namespace upg {

double token_nll(const float* logits, int64_t vocab, int32_t target) {
  double mx = logits[0];
  for (int64_t j = 1; j < vocab; ++j) mx = std::max<double>(mx, logits[j]);
  double z = 0;
  for (int64_t j = 0; j < vocab; ++j) z += std::exp(static_cast<double>(logits[j]) - mx);
  return -(static_cast<double>(logits[target]) - mx - std::log(z));
}

PerplexityResult perplexity(const Model& model, std::span<const int32_t> ids, int window,
                            const std::function<void(int64_t, int64_t)>& progress) {
  Session s(model, window);  // the Session overload checks window and ids
  return perplexity(s, ids, window, progress);
}

PerplexityResult perplexity(Session& s, std::span<const int32_t> ids, int window,
                            const std::function<void(int64_t, int64_t)>& progress) {
  UPG_CHECK(window >= 2, "perplexity: window must be at least 2 tokens, got ", window);
  const int64_t n = static_cast<int64_t>(ids.size());
  UPG_CHECK(n >= window, "perplexity: ", n, " tokens are fewer than one window of ", window);
  const int64_t vocab = s.model().config().vocab_size;
  PerplexityResult r;
  const int64_t nwin = n / window;
  std::vector<float> logits;
  for (int64_t w = 0; w < nwin; ++w) {
    s.reset();
    auto win = ids.subspan(static_cast<size_t>(w * window), static_cast<size_t>(window));
    s.forward(win, logits, true);
    for (int64_t t = 1; t < window; ++t) {
      UPG_CHECK(win[t] >= 0 && win[t] < vocab, "perplexity: token id ", win[t], " out of range");
      r.total_nll += token_nll(logits.data() + (t - 1) * vocab, vocab, win[t]);
    }
    r.tokens += window - 1;
    ++r.windows;
    if (progress) progress(r.windows, nwin);
  }
  r.ppl = r.tokens ? std::exp(r.total_nll / static_cast<double>(r.tokens)) : 0.0;
  return r;
}

}  // namespace upg
