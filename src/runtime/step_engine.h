// What runs batched steps over sequences (runtime/engine.h's batch entries and KV cache), whichever
// way the model is laid out: one Engine, or a TensorParallelEngine whose ranks each hold part of
// it (runtime/tensor_parallel.h). Session and Scheduler drive this interface, so `upg run`, `chat`,
// `eval` and `serve` run either; make_step_engine (tensor_parallel.h) picks.
#pragma once
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "runtime/kv_cache.h"
#include "runtime/model.h"

namespace upg {

using SeqId = KvCache::SeqId;

struct BatchEntry {
  SeqId seq;
  int32_t token;   // in [0, vocab)
  int64_t pos;     // must be the sequence's next position (its length, plus earlier entries of it in this batch)
  bool logits;     // whether this entry's logits are returned
};

class StepEngine {
 public:
  virtual ~StepEngine() = default;

  // The whole model (a tensor-parallel group's too: the model it was split from).
  virtual const Model& model() const = 0;

  virtual SeqId new_sequence() = 0;
  virtual void release(SeqId s) = 0;
  virtual void truncate(SeqId s, int64_t len) = 0;
  virtual int64_t length(SeqId s) const = 0;
  // Prefix sharing (KvCache::attach_prefix / publish_prefix).
  virtual int64_t attach_prefix(SeqId s, std::span<const int32_t> tokens) = 0;
  virtual void publish_prefix(SeqId s, std::span<const int32_t> tokens) = 0;

  // Runs one step; logits becomes (entries with logits = true) x vocab, in batch order. Errors as
  // Engine::step (a bad batch or KvCacheFull change nothing).
  virtual void step(std::span<const BatchEntry> batch, std::vector<float>& logits) = 0;

  // The KV cache: of a tensor-parallel group, rank 0's (every rank's holds the same sequences and
  // positions, its own heads of them).
  virtual const KvCache& cache() const = 0;
  // Gives the memory of free cache blocks back (every rank's); returns the blocks given back.
  virtual int64_t trim_cache() = 0;

  // Calibration hook (Engine::set_observer). Throws Error where it cannot run (a device backend,
  // tensor parallelism).
  using Observer = std::function<void(const std::string& weight_name, const float* x, int64_t n, int64_t cols)>;
  virtual void set_observer(Observer observer) = 0;
};

}  // namespace upg
