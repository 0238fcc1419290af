#include "runtime/session.h"

#include "base/error.h"

namespace upg {

namespace {
EngineOptions session_options(const Model& model, std::optional<KvType> kv, size_t max_bytes, int threads) {
  EngineOptions o;
  o.threads = threads;
  o.kv.type = kv ? *kv : model.backend()->host_memory() ? KvType::F32 : KvType::BF16;
  o.kv.max_bytes = max_bytes;
  return o;
}
}  // namespace

Session::Session(const Model& model, int max_context, std::optional<KvType> kv, size_t kv_max_bytes, int threads,
                 const TensorParallelOptions& tp)
    : engine_(make_step_engine(model, session_options(model, kv, kv_max_bytes, threads), tp)) {
  capacity_ = max_context > 0 ? max_context : model.config().max_position_embeddings;
  UPG_CHECK(capacity_ <= kMaxModelContext, "the context length ", capacity_, " is larger than the ", kMaxModelContext,
            " positions supported");
  seq_ = engine_->new_sequence();
}

void Session::reset() {
  engine_->release(seq_);
  seq_ = engine_->new_sequence();
}

void Session::truncate(int pos) {
  UPG_CHECK(pos >= 0 && pos <= position(), "cannot truncate the session to position ", pos, ": it holds ",
            position(), " positions");
  engine_->truncate(seq_, pos);
}

int32_t Session::forward_sample(std::span<const int32_t> tokens, Sampler& sampler, std::span<const int32_t> history,
                                std::span<const int32_t> generated) {
  set_batch(tokens, false);
  engine_->step_kept(batch_);  // validates the token ids (an error changes nothing)
  const StepEngine::KeptSample row{0, &sampler, history, generated};
  std::vector<int32_t> next;
  engine_->sample_kept(std::span(&row, 1), next);
  return next[0];
}

void Session::forward(std::span<const int32_t> tokens, std::vector<float>& logits, bool all_logits) {
  set_batch(tokens, all_logits);
  engine_->step(batch_, logits);  // validates the token ids (an error changes nothing)
}

void Session::set_batch(std::span<const int32_t> tokens, bool all_logits) {
  const int64_t n = static_cast<int64_t>(tokens.size());
  const int64_t pos = position();
  UPG_CHECK(n > 0, "forward: no tokens given");
  UPG_CHECK(pos + n <= capacity_, "forward: ", n, " tokens at position ", pos, " exceed the context of ", capacity_,
            " tokens (", pos + n, " needed)");
  batch_.resize(static_cast<size_t>(n));
  for (int64_t t = 0; t < n; ++t) batch_[t] = BatchEntry{seq_, tokens[t], pos + t, all_logits || t == n - 1};
}

}  // namespace upg
