#include "eval/llama_perplexity.h"

#include <cmath>

#include "base/error.h"
#include "eval/loglikelihood.h"

namespace upg {

std::vector<int32_t> llama_perplexity_tokens(const Tokenizer& tok, std::string_view text) {
  std::vector<int32_t> ids = tok.encode(text, false);
  if (tok.add_bos() && tok.bos_id()) ids.insert(ids.begin(), *tok.bos_id());
  return ids;
}

LlamaWindows llama_windows(std::span<const int32_t> ids, int ctx, std::optional<int32_t> bos, int64_t max_chunks) {
  UPG_CHECK(ctx >= 4, "perplexity: the context must be at least 4 tokens, got ", ctx);
  UPG_CHECK(static_cast<int64_t>(ids.size()) >= 2 * static_cast<int64_t>(ctx), "perplexity: the text has ", ids.size(),
            " tokens; llama.cpp's method needs at least 2 * ctx = ", 2 * static_cast<int64_t>(ctx));
  LlamaWindows w;
  w.ids = ids;
  w.ctx = ctx;
  w.bos = bos;
  w.chunks = static_cast<int64_t>(ids.size()) / ctx;
  if (max_chunks >= 0 && max_chunks < w.chunks) w.chunks = max_chunks;
  return w;
}

void llama_window_logits(Session& s, const LlamaWindows& win, int64_t w, std::vector<float>& logits) {
  UPG_CHECK(w >= 0 && w < win.chunks, "perplexity: window ", w, " out of range [0, ", win.chunks, ")");
  UPG_CHECK(s.max_context() >= win.ctx, "perplexity: the session holds ", s.max_context(), " positions, fewer than ctx ",
            win.ctx);
  std::vector<int32_t> tokens(win.ids.begin() + w * win.ctx, win.ids.begin() + (w + 1) * win.ctx);
  if (win.bos) tokens[0] = *win.bos;
  const int first = win.first();
  s.reset();
  std::span<const int32_t> t(tokens);
  s.forward(t.first(static_cast<size_t>(first)), logits, false);
  s.forward(t.subspan(static_cast<size_t>(first)), logits, true);
  const int64_t vocab = s.model().config().vocab_size;
  logits.resize(static_cast<size_t>(win.scored_per_chunk() * vocab));  // the last row predicts nothing
}

LlamaPerplexityResult llama_perplexity(const Model& model, const LlamaWindows& win,
                                       const std::function<bool(int64_t, int64_t)>& progress,
                                       const TensorParallelOptions& tp) {
  Session s(model, win.ctx, std::nullopt, 0, 0, tp);
  const int64_t vocab = model.config().vocab_size;
  const int n = win.scored_per_chunk();
  LlamaPerplexityResult r;
  double nll = 0, nll2 = 0;
  std::vector<float> logits;
  std::vector<double> v(static_cast<size_t>(n));
  for (int64_t w = 0; w < win.chunks; ++w) {
    llama_window_logits(s, win, w, logits);
#pragma omp parallel for schedule(static)
    for (int i = 0; i < n; ++i) v[i] = -token_logprob(logits.data() + static_cast<size_t>(i) * vocab, vocab, win.target(w, i));
    for (double x : v) nll += x, nll2 += x * x;
    r.tokens += n;
    ++r.chunks;
    r.running_ppl.push_back(std::exp(nll / static_cast<double>(r.tokens)));
    if (progress && !progress(r.chunks, win.chunks)) break;
  }
  if (r.tokens == 0) return r;
  const double cnt = static_cast<double>(r.tokens);
  r.nll_mean = nll / cnt;
  r.ppl = std::exp(r.nll_mean);
  const double var = nll2 / cnt - r.nll_mean * r.nll_mean;
  if (var > 0 && r.tokens > 1) r.nll_stderr = std::sqrt(var / (cnt - 1));
  r.ppl_err = r.nll_stderr * r.ppl;
  return r;
}

}  // namespace upg
