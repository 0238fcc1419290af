// Tensor parallelism: a model split over the ranks of a group (the split: runtime/shard_plan.h),
// each rank an Engine over its shard (Model::shard) with a Communicator (backend/communicator.h)
// for the collectives, all ranks running the same steps.
//
//   auto model = Model::load("m.upg");
//   TensorParallelEngine tp(*model, 2);           // two ranks, threads of this process (CPU)
//   SeqId s = tp.new_sequence();
//   tp.step(batch, logits);                       // the same logits as Engine::step, to fp32 rounding
//
// On the CPU the ranks are threads sharing the machine's cores and the collectives are memory
// copies (make_host_communicators): no faster than one Engine, but the exact computation several
// GPUs would do, which is how the sharding is tested on machines without them.
#pragma once
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "backend/communicator.h"
#include "runtime/engine.h"
#include "runtime/model.h"
#include "runtime/shard_plan.h"

namespace upg {

// The split of `m` over `ranks` ranks: key-value heads, intermediate channels and vocabulary rows
// as even as the matrices allow (a codec's column slices keep whole groups and rotation blocks; o
// and down fall back to the gathered form when their column split would give the largest rank
// over 1.25x what the free split gives it). Throws Error naming the reason when the model cannot be
// split that way (fewer key-value heads than ranks; mixture-of-experts or latent-attention layers,
// not split yet).
TensorParallelPlan plan_tensor_parallel(const Model& m, int ranks);

struct TensorParallelOptions {
  int ranks = 1;
  // The backend of each rank (--device names: "cpu", "cuda:1", ...); empty: every rank on the CPU.
  std::vector<std::string> devices;
  // "host": collectives through host memory (any backends, several ranks on one GPU included;
  // device buffers are copied down and up); "nccl": NCCL, each rank on its own CUDA device.
  std::string collectives = "host";
};

class TensorParallelEngine : public StepEngine {
 public:
  // One Engine per rank over its shard of `model` (the shards share its embedding and source), with the options of
  // each (threads 0: the current pool's threads shared out between the ranks; o.backend is ignored:
  // tp.devices chooses). Throws Error naming the problem (a plan that cannot be made, a device count
  // other than ranks, NCCL missing).
  TensorParallelEngine(const Model& model, const TensorParallelOptions& tp, const EngineOptions& o = {});
  TensorParallelEngine(const Model& model, int ranks, const EngineOptions& o = {})
      : TensorParallelEngine(model, TensorParallelOptions{ranks, {}, "host"}, o) {}
  ~TensorParallelEngine();

  const Model& model() const override { return model_; }
  int ranks() const { return static_cast<int>(engines_.size()); }
  const TensorParallelPlan& plan() const { return *plan_; }
  const Model& shard(int rank) const { return *shards_[static_cast<size_t>(rank)]; }
  Engine& engine(int rank) { return *engines_[static_cast<size_t>(rank)]; }

  // Each applies to every rank (whose caches hold the same sequences, each its own heads).
  SeqId new_sequence() override;
  void release(SeqId s) override;
  void truncate(SeqId s, int64_t len) override;
  int64_t length(SeqId s) const override { return engines_[0]->length(s); }
  int64_t attach_prefix(SeqId s, std::span<const int32_t> tokens) override;
  void publish_prefix(SeqId s, std::span<const int32_t> tokens) override;
  const KvCache& cache() const override { return engines_[0]->cache(); }
  int64_t trim_cache() override;
  // Throws Error: the calibration observer does not run on a split model.
  void set_observer(Observer observer) override;

  // Engine::step on every rank at once (rank 0 on this thread); logits as Engine::step gives them
  // (rank 0's; every rank computes the same). On an error in any rank every rank stops, the
  // sequences are put back to their lengths before the step, and the first rank's error is thrown.
  void step(std::span<const BatchEntry> batch, std::vector<float>& logits) override;

 private:
  // The group's communicators, made anew after a failed step.
  std::vector<std::shared_ptr<Communicator>> make_communicators() const;

  const Model& model_;
  TensorParallelOptions options_;
  std::vector<std::shared_ptr<Backend>> backends_;
  std::shared_ptr<const TensorParallelPlan> plan_;
  std::vector<std::unique_ptr<Model>> shards_;
  std::vector<std::shared_ptr<Communicator>> comms_;
  std::vector<std::unique_ptr<Engine>> engines_;
  std::vector<std::vector<float>> rank_logits_;
};

// An Engine over `model` when tp.ranks is 1 and tp.devices is empty, else a TensorParallelEngine
// (tp.ranks 1 with a device named: one rank through the tensor-parallel path).
std::unique_ptr<StepEngine> make_step_engine(const Model& model, const EngineOptions& o,
                                             const TensorParallelOptions& tp = {});

}  // namespace upg
