// One sequence on its own Engine (or tensor-parallel group: runtime/step_engine.h): the single-sequence API the CLI, the evaluations and the
// converter's calibration use. forward() with n > 1 tokens is a batched prefill (every projection
// is one matmul with n rows); n = 1 is a decode step. Calls append: the tokens take positions
// position() .. position() + n - 1. Not thread-safe (one Session per thread); the Model may be
// shared and must outlive the Session.
#pragma once
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include <memory>

#include "runtime/engine.h"
#include "runtime/tensor_parallel.h"

namespace upg {

class Session {
 public:
  // max_context: positions the sequence may hold; <= 0 means config().max_position_embeddings.
  // Cache blocks are allocated as positions are written; nothing is reserved here.
  // kv: the cache row type (f32 is exact; bf16 is what `upg run` uses by default); when not given,
  // f32 on the CPU and bf16 on a GPU (whose attention reads bf16 rows only).
  // kv_max_bytes: cap on cache memory (0: none); a forward that would exceed it throws KvCacheFull.
  // threads: the engine's thread pool (EngineOptions::threads; 0: the current pool's count).
  // tp: tensor parallelism (make_step_engine; the default is one Engine); the cap then applies to
  // each rank's cache.
  explicit Session(const Model& model, int max_context = 0, std::optional<KvType> kv = std::nullopt,
                   size_t kv_max_bytes = 0, int threads = 0, const TensorParallelOptions& tp = {});

  // Runs `tokens` (ids in [0, vocab)) at positions position() .. position() + n - 1.
  // logits becomes n x vocab (all_logits) or vocab (the last token's), row-major.
  // Throws Error (and changes nothing) when tokens is empty, an id is out of range, or
  // position() + n exceeds max_context().
  void forward(std::span<const int32_t> tokens, std::vector<float>& logits, bool all_logits);
  // Runs `tokens` as forward() does and returns the next token, drawn from the last one's logits by
  // `sampler` as Sampler::sample(logits, history, generated) draws it. On a GPU the logits stay there
  // (StepEngine::sample_kept): only the token, or a few candidates, come to the host.
  int32_t forward_sample(std::span<const int32_t> tokens, Sampler& sampler, std::span<const int32_t> history,
                         std::span<const int32_t> generated);

  int position() const { return static_cast<int>(engine_->length(seq_)); }
  int max_context() const { return static_cast<int>(capacity_); }
  const Model& model() const { return engine_->model(); }
  StepEngine& engine() { return *engine_; }
  // Forgets everything: next forward starts at position 0.
  void reset();
  // Keeps the first `pos` positions of the cache (0 <= pos <= position()); throws Error otherwise.
  void truncate(int pos);

  // See Engine::set_observer.
  using Observer = StepEngine::Observer;
  void set_observer(Observer observer) { engine_->set_observer(std::move(observer)); }

 private:
  // batch_ = tokens at the next positions (logits for all, or the last); checks n and the context.
  void set_batch(std::span<const int32_t> tokens, bool all_logits);

  std::unique_ptr<StepEngine> engine_;
  SeqId seq_;
  int64_t capacity_;
  std::vector<BatchEntry> batch_;
};

}  // namespace upg
