#include "eval/loglikelihood.h"

#include <algorithm>
#include <cmath>

#include "base/error.h"

namespace upg {

double token_logprob(const float* logits, int64_t vocab, int32_t target, bool* is_argmax) {
  int64_t best = 0;
  float mx = logits[0];
  for (int64_t j = 1; j < vocab; ++j)
    if (logits[j] > mx) mx = logits[j], best = j;
  double z = 0;
  for (int64_t j = 0; j < vocab; ++j) z += std::exp(static_cast<double>(logits[j]) - mx);
  if (is_argmax) *is_argmax = best == target;
  return static_cast<double>(logits[target]) - mx - std::log(z);
}

std::vector<ContinuationScore> score_continuations(Session& s, std::span<const int32_t> context,
                                                   const std::vector<std::vector<int32_t>>& continuations) {
  UPG_CHECK(!context.empty(), "score_continuations: the context has no tokens");
  const int64_t vocab = s.model().config().vocab_size;
  const int nctx = static_cast<int>(context.size());
  for (size_t c = 0; c < continuations.size(); ++c) {
    UPG_CHECK(!continuations[c].empty(), "score_continuations: continuation ", c, " has no tokens");
    const int64_t need = nctx + static_cast<int64_t>(continuations[c].size()) - 1;
    UPG_CHECK(need <= s.max_context(), "score_continuations: context (", nctx, " tokens) + continuation ", c, " (",
              continuations[c].size(), " tokens) needs ", need, " positions; the session holds ", s.max_context());
    for (int32_t id : continuations[c])
      UPG_CHECK(id >= 0 && id < vocab, "score_continuations: token id ", id, " of continuation ", c,
                " is outside the vocabulary [0, ", vocab, ")");
  }
  s.reset();
  std::vector<float> last;  // logits after the last context token: predict each continuation's first token
  s.forward(context, last, false);
  std::vector<ContinuationScore> out(continuations.size());
  std::vector<float> logits;
  for (size_t c = 0; c < continuations.size(); ++c) {
    const auto& cont = continuations[c];
    ContinuationScore& r = out[c];
    r.tokens = static_cast<int>(cont.size());
    bool am = false;
    r.logprob = token_logprob(last.data(), vocab, cont[0], &am);
    r.greedy = am;
    if (cont.size() > 1) {
      s.truncate(nctx);
      // Rows 0..n-2 of the logits predict cont[1..n-1]; the last token is never fed.
      s.forward(std::span<const int32_t>(cont).first(cont.size() - 1), logits, true);
      for (size_t i = 1; i < cont.size(); ++i) {
        r.logprob += token_logprob(logits.data() + (i - 1) * vocab, vocab, cont[i], &am);
        r.greedy = r.greedy && am;
      }
    }
  }
  return out;
}

namespace {
// Python's str.isspace() for the ASCII range (what rstrip() removes in practice).
bool is_py_space(unsigned char c) { return c == ' ' || (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x1f); }
}  // namespace

EncodedRequest encode_request(const Tokenizer& tok, std::string_view context,
                              const std::vector<std::string>& continuations, bool add_special_tokens) {
  size_t keep = context.size();
  while (keep > 0 && is_py_space(static_cast<unsigned char>(context[keep - 1]))) --keep;
  const std::string_view ctx = context.substr(0, keep), moved = context.substr(keep);
  EncodedRequest r;
  if (ctx.empty()) {
    // lm-eval: an empty context is replaced by the prefix token (BOS, else EOS).
    auto bos = tok.bos_id();
    auto eos = tok.eos_ids();
    UPG_CHECK(bos || !eos.empty(), "encode_request: the context is empty and the tokenizer has neither BOS nor EOS");
    r.context = {bos ? *bos : eos[0]};
    for (const auto& c : continuations) {
      r.continuations.push_back(tok.encode(std::string(moved) + c, false));
      UPG_CHECK(!r.continuations.back().empty(), "encode_request: continuation '", c, "' encodes to no tokens");
    }
    return r;
  }
  r.context = tok.encode(ctx, add_special_tokens);
  std::string whole(ctx);
  for (const auto& c : continuations) {
    whole.resize(ctx.size());
    whole.append(moved).append(c);
    std::vector<int32_t> ids = tok.encode(whole, add_special_tokens);
    std::vector<int32_t> tail;
    if (ids.size() > r.context.size()) tail.assign(ids.begin() + static_cast<ptrdiff_t>(r.context.size()), ids.end());
    UPG_CHECK(!tail.empty(), "encode_request: continuation '", c, "' adds no tokens after the context");
    r.continuations.push_back(std::move(tail));
  }
  return r;
}

void fit_context(EncodedRequest& req, int max_context) {
  size_t longest = 0;
  for (const auto& c : req.continuations) longest = std::max(longest, c.size());
  const int64_t room = static_cast<int64_t>(max_context) + 1 - static_cast<int64_t>(longest);
  UPG_CHECK(room >= 1, "a continuation of ", longest, " tokens does not fit in a context of ", max_context,
            " positions");
  if (static_cast<int64_t>(req.context.size()) > room) {
    const size_t drop = req.context.size() - static_cast<size_t>(room);
    req.context.erase(req.context.begin(), req.context.begin() + static_cast<ptrdiff_t>(drop));
    req.truncated += static_cast<int>(drop);
  }
}

}  // namespace upg
