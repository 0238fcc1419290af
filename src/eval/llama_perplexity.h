// Perplexity by llama.cpp's method (tools/perplexity/perplexity.cpp, `llama-perplexity -f FILE -c CTX`),
// so that figures can be set beside llama.cpp's:
//
//  * the whole text is tokenized once, with BOS in front when the tokenizer adds one
//    (llama_perplexity_tokens);
//  * n_chunk = tokens / ctx windows of ctx consecutive tokens (the rest is dropped; at least
//    2 * ctx tokens are required, as llama.cpp requires);
//  * in each window the first token is replaced by BOS when the tokenizer adds BOS (no change
//    otherwise), the window is evaluated from an empty cache, and only the second half is scored:
//    with first = ctx / 2, the logits at positions first .. ctx - 2 predict tokens first + 1 ..
//    ctx - 1, i.e. ctx - 1 - first tokens per window (255 for ctx = 512);
//  * PPL = exp(mean NLL); its uncertainty = PPL * sqrt((E[nll^2] - E[nll]^2) / (count - 1)).
//
// The same windows are used by kl_divergence (eval/kl_divergence.h).
#pragma once
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "runtime/session.h"
#include "tokenizer/tokenizer.h"

namespace upg {

// encode(text, no specials), with BOS prepended when tok.add_bos() (llama.cpp's
// common_tokenize(ctx, text, add_special = true) for a vocabulary without add_eos).
std::vector<int32_t> llama_perplexity_tokens(const Tokenizer& tok, std::string_view text);

// The windows of the method over `ids` (limited to max_chunks when >= 0). Throws Error when
// ctx < 4 or there are fewer than 2 * ctx ids.
struct LlamaWindows {
  std::span<const int32_t> ids;
  int ctx = 512;
  int64_t chunks = 0;
  std::optional<int32_t> bos;  // replaces the first token of each window when set
  int first() const { return ctx / 2; }
  int scored_per_chunk() const { return ctx - 1 - ctx / 2; }
  // Target token of scored row r (0 .. scored_per_chunk() - 1) of window w.
  int32_t target(int64_t w, int r) const { return ids[static_cast<size_t>(w * ctx + first() + r + 1)]; }
};
LlamaWindows llama_windows(std::span<const int32_t> ids, int ctx, std::optional<int32_t> bos,
                           int64_t max_chunks = -1);

// Evaluates window w from an empty cache; `logits` becomes scored_per_chunk() x vocab: row r
// holds the logits at position first + r (predicting target(w, r)). The session must hold ctx
// positions. Only the second half is computed with all logits.
void llama_window_logits(Session& s, const LlamaWindows& win, int64_t w, std::vector<float>& logits);

struct LlamaPerplexityResult {
  int64_t chunks = 0;         // windows evaluated
  int64_t tokens = 0;         // scored tokens = chunks * (ctx - 1 - ctx/2)
  double nll_mean = 0;        // mean negative log-likelihood (natural log)
  double nll_stderr = 0;      // its standard error
  double ppl = 0, ppl_err = 0;
  std::vector<double> running_ppl;  // PPL after each window (llama.cpp prints these as [i]x,)
};

// progress(done, total) is called after each window; returning false stops early (the result
// then covers the windows done).
// tp: tensor parallelism of the Session (runtime/tensor_parallel.h; the default is one Engine).
LlamaPerplexityResult llama_perplexity(const Model& model, const LlamaWindows& win,
                                       const std::function<bool(int64_t, int64_t)>& progress = nullptr,
                                       const TensorParallelOptions& tp = {});

}  // namespace upg
