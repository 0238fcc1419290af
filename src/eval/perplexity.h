// Perplexity of a token sequence, by the method of refA's reference.json (and the usual
// "non-overlapping windows" evaluation): the ids are cut into consecutive windows of `window`
// tokens (the last partial window is dropped); each window is scored independently from an empty
// cache; within a window, tokens 2..window are scored given the tokens before them (the first
// token has no context and is not scored). NLL is accumulated in double from a log-softmax in
// double over the fp32 logits. ppl = exp(total_nll / scored_tokens).
#pragma once
#include <cstdint>
#include <functional>
#include <span>

#include "runtime/session.h"

namespace upg {

struct PerplexityResult {
  double total_nll = 0;     // sum of -log p(token | context), natural log
  int64_t tokens = 0;       // scored tokens = windows * (window - 1)
  int64_t windows = 0;
  double ppl = 0;           // exp(total_nll / tokens); 0 when nothing was scored
};

// Throws Error when window < 2 or fewer than
// `window` ids are given. `progress(done_windows, total_windows)` is called after each window.
PerplexityResult perplexity(const Model& model, std::span<const int32_t> ids, int window = 512,
                            const std::function<void(int64_t, int64_t)>& progress = nullptr);
// The same through a Session the caller made (one whose context holds `window` positions; it is
// reset before each window): how `upg eval ppl` runs windows one at a time on one engine.
PerplexityResult perplexity(Session& s, std::span<const int32_t> ids, int window,
                            const std::function<void(int64_t, int64_t)>& progress = nullptr);

// -log softmax(logits)[target] in double.
double token_nll(const float* logits, int64_t vocab, int32_t target);

}  // namespace upg
