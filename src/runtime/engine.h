// The batched decoder: one step runs a batch of (sequence, position, token) entries from any number
// of sequences (prefill chunks and decode tokens mixed) through the model, so every weight matrix
// is read once per step for all of them (continuous batching). Each sequence's keys and values live
// in the paged KvCache (runtime/kv_cache.h).
//
// The forward pass (the generic block: Phi-3, Llama, Mistral, Qwen2, Gemma 2; the options in
// brackets come from the architecture's BlockConfig and tensor table):
//   x = embed(token) [* embedding_scale]
//   per layer: h = RMSNorm(x); [q|k|v] = h W_qkv^T (+ bias); RoPE(q, k) at each token's position;
//              k, v -> cache; a = attention over the token's own sequence (scores * scale,
//              [soft-capped], [within the layer's window]); x += [RMSNorm](a W_o^T (+ bias))
//              h = RMSNorm(x); [g|u] = h W_gu^T (+ bias); x += [RMSNorm]((act(g) * u) W_down^T (+ bias))
//   logits = RMSNorm(x) W_lm^T [* logit_scale] [soft-capped], for the entries that ask for them.
// Arithmetic is fp32; the cache rows are of the cache's type.
//
// Every op runs on a Backend (backend/backend.h): the model's (Model::backend(), the CPU unless the
// caller chose a device) or the one in EngineOptions. Activations and the KV cache live in the
// backend's memory; only token ids go in and the requested logits come out. Mixture-of-experts
// layers, multi-head latent attention and the calibration observer read activations on the host, so
// they run on backends with host memory only (the constructor and set_observer say so otherwise).
//
// Threads: on a backend with host memory (the CPU) the Engine owns a ThreadPool (base/thread_pool.h)
// of EngineOptions::threads threads and makes it the current pool for each step, so every kernel the
// step runs (the backend's ops, the codecs' matmuls, the engine's own MLA / MoE loops) shares it
// without a pool parameter on any interface. A device backend gets no pool (its ops run on the device).
// (The Engine, not the CPU backend's StepContext, owns it: Backend::matmul takes no context, and
// the MLA and mixture-of-experts loops run outside the backend, so only the Engine spans a step.)
//
// Not thread-safe (one caller at a time); the Model may be shared and must outlive the Engine.
#pragma once
#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "backend/communicator.h"
#include "base/thread_pool.h"
#include "runtime/kv_cache.h"
#include "runtime/model.h"
#include "runtime/step_engine.h"

namespace upg {

struct EngineOptions {
  KvCacheOptions kv;
  std::shared_ptr<Backend> backend;  // null: the model's (Model::backend())
  // Threads of the engine's pool (the CPU kernels of its steps). 0: the thread count of the pool
  // current where the Engine is built (ThreadPool::current_threads(): all cores, or -t /
  // set_default_threads / OMP_NUM_THREADS, or the pool of an enclosing ThreadPool::Scope).
  int threads = 0;
  // Tensor parallelism (runtime/tensor_parallel.h): this rank's communicator; the model must then be
  // the shard of the same rank (Model::shard), and every rank of the group runs the same steps.
  std::shared_ptr<Communicator> comm;
};

class Engine : public StepEngine {
 public:
  explicit Engine(const Model& model, const EngineOptions& o = {});

  const Model& model() const override { return model_; }
  Backend& backend() const { return *backend_; }
  // The engine's pool (null on a device backend).
  ThreadPool* pool() const { return pool_.get(); }
  KvCache& cache() { return cache_; }
  const KvCache& cache() const override { return cache_; }
  int64_t trim_cache() override { return cache_.trim(); }

  SeqId new_sequence() override;
  void release(SeqId s) override;
  SeqId fork(SeqId s, int64_t len);   // a new sequence sharing the first len positions of s
  void truncate(SeqId s, int64_t len) override;
  int64_t length(SeqId s) const override { return cache_.length(s); }
  // Prefix sharing (see KvCache): attach a new sequence to registered blocks matching its prompt
  // (returns the positions attached, which need not be run again), and register a prefilled one.
  int64_t attach_prefix(SeqId s, std::span<const int32_t> tokens) override;
  void publish_prefix(SeqId s, std::span<const int32_t> tokens) override { cache_.publish_prefix(s, tokens); }

  // Runs one step. logits becomes (entries with logits = true) x vocab, in batch order.
  // Throws Error, changing nothing, when the batch is empty, an entry names an unknown sequence,
  // a token id is out of range or a position is not the sequence's next; KvCacheFull (an Error),
  // changing nothing, when the cache cannot hold the new positions.
  void step(std::span<const BatchEntry> batch, std::vector<float>& logits) override;
  // Logits kept on the backend (StepEngine): on a device, sample_kept applies the penalties there and
  // brings over each row's largest logits (kernels/logit_select.h), the whole row only when those
  // cannot decide; on the host, StepEngine's.
  void step_kept(std::span<const BatchEntry> batch) override;
  void kept_logits(int64_t row, std::vector<float>& out) const override;
  void sample_kept(std::span<const KeptSample> rows, std::vector<int32_t>& tokens) override;

  // Calibration hook: when set, step() calls it with the input of every linear projection just
  // before the projection runs: the weight's Hugging Face name ("model.layers.3.mlp.down_proj.weight";
  // the LM head under its own name, or the embedding's when tied), x = n x cols fp32 row-major
  // (valid only during the call; n = the batch, or the entries with logits for the LM head).
  // Projections sharing one input (q, k, v; gate, up) are each reported, with the same pointer.
  // Throws Error when the backend's memory is not host memory, or with tensor parallelism.
  void set_observer(Observer observer) override;

  // Replaces the communicator (a tensor-parallel group made anew after a failed step); same rank.
  void set_communicator(std::shared_ptr<Communicator> comm);

 private:
  // step() and step_kept(): with `logits` the rows end up there (host); without, on a device backend
  // they stay in its memory (kept_dev_).
  void run_step(std::span<const BatchEntry> batch, std::vector<float>* logits);
  struct SeqState {
    DynamicRopeState dynamic;
  };
  const RopeFrequencies& frequencies(SeqState& st, int64_t seq_len);
  // Reports x to the observer under the names of the layer's projections reading `in` (of routed
  // expert `expert`, or -1 for the others).
  void observe(size_t layer, LinearInput in, const float* x, int64_t n, int64_t cols, int64_t expert = -1) const;
  // out (n x hidden) = the gated MLP g of in (n x hidden), biases included (runtime/engine_mlp.cpp).
  // Observes the MLP's input too when observe_input (its activation always).
  // (in and out are backend memory.)
  // split: g is this rank's part of a tensor-parallel MLP (its down projection combined over the
  // ranks); false for experts, which a rank holds whole.
  void gated_mlp(size_t layer, int64_t expert, const GatedMlp& g, const float* in, int64_t n, float* out,
                 bool observe_input, bool accumulate = false, bool split = true);
  // route_ (n x cols) <- in times w (a router or a gate), on the host: the backend's product, sent back.
  void product_to_host(const WeightMatrix& w, const float* in, int64_t n, std::vector<float>& out);
  // Multi-head latent attention of layer `layer` for the batch, from h_ into attn_ (heads x v_head_dim
  // per entry), its latent rows stored in the cache (runtime/engine_mla.cpp).
  void mla_attention(size_t layer, int64_t n);
  // out (n x hidden) = the layer's mixture of experts applied to in (runtime/engine_mlp.cpp); in and
  // out are backend memory. The router's scores come to the host, which chooses the experts.
  void moe_mlp(size_t layer, const float* in, int64_t n, float* out);
  // out (n x hidden) = in times the row-parallel projection w (o, down): a plain matmul, or on a
  // tensor-parallel rank its part of w over its part of the input (in_widths: every rank's), the
  // ranks' parts combined as the plan says (shard_plan.h: summed by columns, or gathered), so out is
  // the whole product on every rank.
  void combined_matmul(const WeightMatrix& w, bool by_columns, const float* in, const std::vector<int64_t>& in_widths,
                       int64_t n, float* out);
  // out (n x the sum of widths) <- every rank's `mine` (n x widths[rank]) side by side, in rank order.
  void gather_columns(const float* mine, int64_t n, const std::vector<int64_t>& widths, float* out);
  // x += y (n x H) after adding the bias and applying the output norm (when not empty) to y.
  void add_residual(float* y, const std::vector<float>& bias, const std::vector<float>& norm, int64_t n, int64_t H,
                    float eps);
  // out (n x out_width) = in times the parts' outputs side by side, plus the bias.
  void project(const std::vector<std::unique_ptr<WeightMatrix>>& parts, const std::vector<float>& bias,
               const float* in, int64_t n, float* out, int64_t out_width);

  const Model& model_;
  std::shared_ptr<Backend> backend_;
  std::unique_ptr<ThreadPool> pool_;
  std::unique_ptr<StepContext> ctx_;
  KvCache cache_;
  std::map<SeqId, SeqState> states_;
  std::map<int64_t, RopeFrequencies> freq_;  // by the length key rope_frequencies depends on
  Observer observer_;
  // Per layer: the names of the projections reading each (input, routed expert or -1).
  std::vector<std::map<std::pair<LinearInput, int64_t>, std::vector<std::string>>> observed_names_;
  std::string head_name_;
  // Activations (backend memory), grown as steps need.
  Buffer x_, h_, qkv_, q_, k_, attn_, tmp_, mlp_, act_, cos_, sin_, part_, xs_;
  // Tensor parallelism: the communicator, each rank's widths (query outputs, intermediate channels,
  // hidden rows of gathered projections, vocabulary rows), and buffers for gathered activations.
  std::shared_ptr<Communicator> comm_;
  std::vector<int64_t> tp_q_, tp_inter_, tp_hidden_, tp_vocab_;
  Buffer tp_in_, tp_out_, tp_gather_;
  // Host staging of the rotary angles, and the step's views of the cache (layer 0).
  std::vector<float> cos_host_, sin_host_;
  std::vector<KvLayerView> kv0_;
  std::vector<int64_t> kv_blocks_, kv_pos_;
  // Mixture-of-experts scratch: router scores (host, and the backend's product before it is sent),
  // rows gathered for one expert, its output, the shared expert's output and its gate (host), and
  // per expert the tokens routed to it and their weights.
  std::vector<float> route_, shared_gate_;
  Buffer route_dev_, gathered_, expert_out_, shared_out_;
  std::vector<std::vector<int32_t>> routed_rows_;
  std::vector<std::vector<float>> routed_weights_;
  // MLA scratch (backend memory): q (heads x qk_head_dim per entry), its LoRA latent, the kv latent
  // [c | k_rope], the queries in latent space (heads x (kv_lora + rope) per entry), and the normed c
  // or the heads' latent outputs.
  Buffer mla_q_, mla_qa_, mla_kv_, mla_ql_, mla_lat_;
  // The kept logits on a device (step_kept): kept_rows_ rows of the vocabulary at kept_dev_ (in
  // part_ or tp_in_); host scratch of sample_kept.
  float* kept_dev_ = nullptr;
  int64_t kept_rows_ = 0;
  std::vector<LogitPenalty> penalties_;
  std::vector<int32_t> top_ids_, top_rows_;
  std::vector<float> top_values_, row_;
  std::vector<double> top_sums_;
};

}  // namespace upg
