#include "runtime/generate.h"

#include <algorithm>

#include "base/error.h"
#include "runtime/session.h"
#include "runtime/text_stream.h"
#include "tokenizer/tokenizer.h"

namespace upg {

using Clock = std::chrono::steady_clock;

static double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

double GenerateStats::prompt_tokens_per_second() const {
  return prefill_seconds > 0 ? prompt_tokens / prefill_seconds : 0.0;
}

double GenerateStats::generation_tokens_per_second() const {
  // The first generated token comes from the prefill's logits; the rest each cost one decode step.
  return decode_seconds > 0 && generated_tokens > 1 ? (generated_tokens - 1) / decode_seconds : 0.0;
}

std::vector<int32_t> generate(Session& session, const Tokenizer& tok, const std::vector<int32_t>& prompt_ids,
                              const GenerateOptions& opt, const std::function<bool(const std::string&)>& on_text,
                              GenerateStats* stats) {
  UPG_CHECK(!prompt_ids.empty(), "the prompt is empty: nothing to generate from");
  UPG_CHECK(opt.max_new_tokens >= 0, "the number of tokens to generate must be >= 0, got ", opt.max_new_tokens);
  const int max_ctx = session.max_context();
  UPG_CHECK(session.position() + static_cast<int>(prompt_ids.size()) <= max_ctx, "the prompt needs ",
            session.position() + prompt_ids.size(), " tokens of context but the model allows ", max_ctx);

  GenerateStats st;
  st.prompt_tokens = static_cast<int>(prompt_ids.size());
  Sampler sampler(opt.sampling);
  std::vector<int32_t> history(prompt_ids);
  std::vector<int32_t> out;
  std::vector<float> logits;
  const std::vector<int32_t> eos = opt.stop_at_eos ? tok.eos_ids() : std::vector<int32_t>{};
  TextStream text(tok, opt.stop_strings);
  bool stopped = false;

  // Passes released text on; false when generation must end (a stop string or the caller).
  auto emit = [&](const std::string& piece) {
    if (!piece.empty() && !on_text(piece)) {
      st.stop_reason = "stopped by caller";
      return false;
    }
    if (text.stopped()) {
      st.stop_reason = "stop string";
      return false;
    }
    return true;
  };

  // The logits stay where the model runs (a GPU): each step returns the sampled token.
  auto t0 = Clock::now();
  int32_t next = opt.max_new_tokens > 0 ? session.forward_sample(prompt_ids, sampler, history, out) : -1;
  if (opt.max_new_tokens == 0) session.forward(prompt_ids, logits, /*all_logits=*/false);
  st.prefill_seconds = seconds_since(t0);
  auto t1 = Clock::now();
  st.stop_reason = "length";
  for (int i = 0; i < opt.max_new_tokens; ++i) {
    if (std::find(eos.begin(), eos.end(), next) != eos.end()) {
      st.stop_reason = "eos";
      break;
    }
    out.push_back(next);
    history.push_back(next);
    if (!emit(text.push(next))) {
      stopped = true;
      break;
    }
    if (i + 1 == opt.max_new_tokens) break;
    if (session.position() >= max_ctx) {
      st.stop_reason = "context full";
      break;
    }
    const int32_t last = next;
    next = session.forward_sample(std::span<const int32_t>(&last, 1), sampler, history, out);
  }
  if (!stopped) emit(text.finish());
  st.decode_seconds = seconds_since(t1);
  st.generated_tokens = static_cast<int>(out.size());
  if (stats) *stats = st;
  return out;
}

}  // namespace upg
