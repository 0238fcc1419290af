// A loaded model: its config, its architecture description and its weights (kept where the
// WeightSource holds them, usually memory-mapped; nothing is expanded). Immutable after load and
// safe to share between threads; the Engine (runtime/engine.h) or a Session (runtime/session.h)
// holds the KV cache and activations.
//
// Usage:
//   auto model = upg::Model::load("path/to/hf_dir");
//   upg::Session s(*model, /*max_context=*/4096);
//   std::vector<float> logits;
//   s.forward(prompt_ids, logits, /*all_logits=*/false);   // prefill: logits of the last token
//   s.forward({&next, 1}, logits, false);                   // decode one token with the KV cache
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "codecs/weight_matrix.h"
#include "models/model_config.h"
#include "models/registry.h"
#include "models/rope.h"
#include "runtime/shard_plan.h"
#include "runtime/weight_source.h"

namespace upg {

// A gated MLP: out = (act(x W_gate^T) * (x W_up^T)) W_down^T, with optional biases.
struct GatedMlp {
  // Input projection(s): one fused [gate | up] or two (gate, up); outputs concatenated.
  std::vector<std::unique_ptr<WeightMatrix>> gate_up;
  std::vector<float> gate_up_bias;  // empty, or the concatenated gate|up bias
  std::unique_ptr<WeightMatrix> down;
  std::vector<float> down_bias;
  bool empty() const { return !down; }
  // gate_up's rows / 2 (not down's columns: a tensor-parallel shard's down may be gathered, with
  // every rank's channels as its columns).
  int64_t intermediate() const {
    int64_t rows = 0;
    for (const auto& w : gate_up) rows += w->rows();
    return rows / 2;
  }
};

// Weights of one decoder layer, as the generic decoder uses them; filled from the architecture's
// tensor table (models/arch_tensors.h) by Part.
struct LayerWeights {
  // Attention input projection(s): one fused [q | k | v] matrix or three (q, k, v); their outputs
  // concatenated give q (heads*head_dim) | k (kv_heads*head_dim) | v (kv_heads*head_dim).
  std::vector<std::unique_ptr<WeightMatrix>> qkv;
  std::vector<float> qkv_bias;  // empty, or the concatenated q|k|v bias
  std::unique_ptr<WeightMatrix> o;
  std::vector<float> o_bias;
  // Multi-head latent attention (ModelConfig::mla; the fields above for q/k/v are then empty).
  struct Mla {
    std::unique_ptr<WeightMatrix> q, q_a, q_b;  // q, or q_a then q_b
    std::vector<float> q_a_norm;
    std::unique_ptr<WeightMatrix> kv_a, kv_b;
    std::vector<float> kv_a_norm;
    // kv_b split per head for the absorbed form, fp32: w_uk [heads][nope][kv_lora] (keys),
    // w_uv [heads][v][kv_lora] (values).
    std::vector<float> w_uk, w_uv;
  } mla;
  GatedMlp mlp;  // the dense MLP (empty in a mixture-of-experts layer)
  // Mixture of experts (ModelConfig::moe): the router (experts x hidden; null in dense layers),
  // the routed experts, the shared expert (empty if none) and its sigmoid gate (1 x hidden, or null).
  std::unique_ptr<WeightMatrix> router;
  std::vector<float> router_bias;  // experts (RouterKind::SigmoidGrouped), else empty
  std::vector<GatedMlp> experts;
  GatedMlp shared_expert;
  std::unique_ptr<WeightMatrix> shared_expert_gate;
  // Norm weights as the decoder multiplies by them (an architecture's weight offset, Gemma's 1 + w,
  // folded in at load): before attention, before the MLP (hidden_size each), and the optional norms
  // of the attention and MLP outputs before their residual adds (empty when the table has none).
  std::vector<float> input_norm, post_attention_norm;
  std::vector<float> attn_out_norm, mlp_out_norm;
  int64_t window = 0;  // attention window (0 = full causal)
};

class Model {
 public:
  // Loads a Hugging Face model directory or a UPG file (see open_weight_source). Throws Error
  // naming the path, the config field or the tensor (with expected and found shape) on any problem.
  static std::unique_ptr<Model> load(const std::string& path);
  static std::unique_ptr<Model> load(std::unique_ptr<WeightSource> source);
  // Rank `rank`'s shard of `full` under `plan` (runtime/shard_plan.h; made by plan_tensor_parallel in
  // runtime/tensor_parallel.h): a model whose config counts only its heads and intermediate channels
  // (vocab_size stays the whole vocabulary), whose matrices are its slices of full's (copied,
  // each a valid matrix of its codec: codecs/matrix_slice.h), its LM head its vocabulary rows. The
  // embedding is full's own, shared. Throws Error naming the
  // tensor that cannot be cut as the plan says. (runtime/tensor_parallel.cpp)
  static std::unique_ptr<Model> shard(const Model& full, std::shared_ptr<const TensorParallelPlan> plan, int rank);

  const ModelConfig& config() const { return config_; }
  const ArchSpec& arch() const { return *arch_; }
  const WeightSource& source() const { return *source_; }
  // Every tensor the model was loaded from (the architecture's table expanded for this config).
  const std::vector<ModelTensor>& tensors() const { return tensors_; }
  // Auxiliary files of the model (tokenizer.json, generation_config.json, ...); nullopt if absent.
  std::optional<std::string> file_text(const std::string& name) const { return source_->file_text(name); }
  // Bytes of stored weight arrays the matrices read (not counting norms/biases).
  size_t weight_bytes() const;
  // What decoding one token reads, on average: every matrix but the routed experts, plus, in each
  // mixture-of-experts layer, experts_per_token of its experts (their mean size). Equal to
  // weight_bytes() / the matrices' weight count for a dense model.
  double active_weight_bytes() const;
  int64_t active_matrix_weights() const;
  // Calls f(matrix) for every matrix of the model: the embedding, the LM head when untied, and
  // every projection, router and expert of every layer.
  void for_each_matrix(const std::function<void(const WeightMatrix&)>& f) const;
  // Number of weights (every tensor of the table, vectors included).
  int64_t parameter_count() const;

  const WeightMatrix& embed_tokens() const { return *embed_; }  // vocab x hidden
  const WeightMatrix& lm_head() const { return lm_head_ ? *lm_head_ : *embed_; }  // vocab x hidden
  const std::vector<LayerWeights>& layers() const { return layers_; }
  const std::vector<float>& final_norm() const { return final_norm_; }  // offset folded in, as above

  // The backend the model runs on: the CPU unless set_backend() chose another (`--device`). Engines
  // prepare the model's matrices on it once (Backend::prepare keeps them for the model's lifetime).
  // Set it before sharing the model between threads.
  const std::shared_ptr<Backend>& backend() const { return backend_; }
  void set_backend(std::shared_ptr<Backend> b);

  // The plan this model is a shard of, and its rank (null and 0 for a whole model).
  const TensorParallelPlan* tensor_parallel() const { return tp_plan_.get(); }
  int tensor_parallel_rank() const { return tp_rank_; }

 private:
  Model() = default;
  std::shared_ptr<WeightSource> source_;  // shared with the model's shards
  ModelConfig config_;
  const ArchSpec* arch_ = nullptr;
  std::vector<ModelTensor> tensors_;
  std::shared_ptr<WeightMatrix> embed_;  // shared with the model's shards
  std::unique_ptr<WeightMatrix> lm_head_;  // null when tied
  std::vector<LayerWeights> layers_;
  std::vector<float> final_norm_;
  std::shared_ptr<const TensorParallelPlan> tp_plan_;
  int tp_rank_ = 0;
  std::shared_ptr<Backend> backend_ = cpu_backend();  // last: destroyed first, before the matrices it holds copies of
};

}  // namespace upg
