// Log-likelihood scoring of continuations, the way lm-evaluation-harness computes `loglikelihood`
// requests (lm_eval/api/model.py TemplateLM._encode_pair + HFLM._loglikelihood_tokens):
//
//  * Text level (encode_request): trailing whitespace of the context is moved to the front of every
//    continuation; context_ids = encode(context); for each continuation,
//    continuation_ids = encode(context + continuation)[len(context_ids):] (the tail of the joint
//    encoding, so a merge across the boundary is scored as part of the continuation).
//  * Token level (score_continuations): the model input is context_ids + continuation_ids[:-1];
//    the score of a continuation is sum_i log p(continuation_ids[i] | everything before it), and
//    it is "greedy" when every continuation token is the argmax of its logits row.
//
// The shared context is evaluated ONCE (one prefill); each continuation then truncates the
// Session back to the context and runs only its own tokens (len - 1 of them: the last token's
// logits are never needed). A one-token continuation such as MMLU's " A" costs no forward at all.
//
// This is the scoring core for every multiple-choice task (and for later `upg compare`).
#pragma once
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/session.h"
#include "tokenizer/tokenizer.h"

namespace upg {

struct ContinuationScore {
  double logprob = 0;   // sum of natural-log probabilities of the continuation tokens
  int tokens = 0;       // number of continuation tokens scored
  bool greedy = true;   // every continuation token was the argmax of its row
};

// Scores each continuation after the shared context. Resets `session` first; on return the
// session holds the context (and possibly part of the last continuation). Throws Error when
// the context or a continuation is empty, or context + continuation - 1 exceeds
// session.max_context() (use fit_context() to left-truncate first).
std::vector<ContinuationScore> score_continuations(Session& session, std::span<const int32_t> context,
                                                   const std::vector<std::vector<int32_t>>& continuations);

// log softmax(logits)[target] in double (natural log), and whether target is the argmax
// (the first maximum, as torch.argmax picks it).
double token_logprob(const float* logits, int64_t vocab, int32_t target, bool* is_argmax = nullptr);

struct EncodedRequest {
  std::vector<int32_t> context;
  std::vector<std::vector<int32_t>> continuations;
  int truncated = 0;  // context tokens dropped on the left by fit_context (0 = none)
};

// lm-eval's _encode_pair for one context and several continuations. add_special_tokens is passed
// to the tokenizer (lm-eval's HF default for causal models is false: no BOS). An empty context
// becomes [BOS] (else [first EOS]) as lm-eval's prefix_token_id. Throws Error when a
// continuation encodes to no tokens.
EncodedRequest encode_request(const Tokenizer& tok, std::string_view context,
                              const std::vector<std::string>& continuations, bool add_special_tokens = false);

// Left-truncates req.context so that context + the longest continuation - 1 fits in max_context
// positions (lm-eval keeps the last max_length + 1 tokens of context + continuation). Throws when
// even one context token would not fit.
void fit_context(EncodedRequest& req, int max_context);

}  // namespace upg
