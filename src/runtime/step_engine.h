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
#include "runtime/sampler.h"

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

  // ---- Logits kept where they were computed ------------------------------------------------------
  // So that on a GPU only token ids (or a few candidates per row) cross to the host each step:
  // step_kept() runs a step like step() but keeps its logits rows (the entries with logits = true,
  // in batch order) where they were computed, until the next step; sample_kept() draws the next
  // token of some of them and kept_logits() brings a whole row over. The defaults keep the rows on
  // the host (step() into a host vector); Engine keeps them on its backend.
  virtual void step_kept(std::span<const BatchEntry> batch) { step(batch, kept_); }
  // Row `row` of the kept logits (vocab values): as computed, or with the penalties a sample_kept
  // of it applied.
  virtual void kept_logits(int64_t row, std::vector<float>& out) const;
  // Kept row `row`, drawn from by `sampler` as Sampler::sample(row, history, generated) draws (the
  // same token; on a device the penalties are applied there and only the row's largest logits come
  // over, unless they cannot decide). The penalties stay applied to the kept row.
  struct KeptSample {
    int64_t row;
    Sampler* sampler;
    std::span<const int32_t> history, generated;
  };
  // tokens[i] = the token drawn for rows[i].
  virtual void sample_kept(std::span<const KeptSample> rows, std::vector<int32_t>& tokens);

  // The KV cache: of a tensor-parallel group, rank 0's (every rank's holds the same sequences and
  // positions, its own heads of them).
  virtual const KvCache& cache() const = 0;
  // Gives the memory of free cache blocks back (every rank's); returns the blocks given back.
  virtual int64_t trim_cache() = 0;

  // Calibration hook (Engine::set_observer). Throws Error where it cannot run (a device backend,
  // tensor parallelism).
  using Observer = std::function<void(const std::string& weight_name, const float* x, int64_t n, int64_t cols)>;
  virtual void set_observer(Observer observer) = 0;

 protected:
  std::vector<float> kept_;  // the default step_kept's logits (host)
};

}  // namespace upg
