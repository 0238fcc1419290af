// A loaded model: its config, its architecture description and its weights (kept where the
// WeightSource holds them, usually memory-mapped; nothing is expanded). Immutable after load and
// safe to share between threads; each Session holds its own KV cache and activations.
//
// Usage:
//   auto model = upg::Model::load("path/to/hf_dir");
//   upg::Session s(*model, /*max_context=*/4096);
//   std::vector<float> logits;
//   s.forward(prompt_ids, logits, /*all_logits=*/false);   // prefill: logits of the last token
//   s.forward({&next, 1}, logits, false);                   // decode one token with the KV cache
#pragma once
#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "codecs/weight_matrix.h"
#include "models/model_config.h"
#include "models/registry.h"
#include "models/rope.h"
#include "runtime/weight_source.h"

namespace upg {

// Weights of one decoder layer, as the generic decoder uses them.
struct LayerWeights {
  // Attention input projection(s): one fused [q | k | v] matrix or three (q, k, v); their outputs
  // concatenated give q (heads*head_dim) | k (kv_heads*head_dim) | v (kv_heads*head_dim).
  std::vector<std::unique_ptr<WeightMatrix>> qkv;
  std::vector<float> qkv_bias;  // empty, or the concatenated q|k|v bias
  std::unique_ptr<WeightMatrix> o;
  std::vector<float> o_bias;
  // MLP input projection(s): one fused [gate | up] or two (gate, up); outputs concatenated.
  std::vector<std::unique_ptr<WeightMatrix>> gate_up;
  std::vector<float> gate_up_bias;
  std::unique_ptr<WeightMatrix> down;
  std::vector<float> down_bias;
  std::vector<float> input_norm, post_attention_norm;  // hidden_size each
  int64_t window = 0;  // attention window (0 = full causal)
};

class Model {
 public:
  // Loads a Hugging Face model directory (see open_weight_source). Throws Error naming the path,
  // the config field or the tensor (with expected and found shape) on any problem.
  static std::unique_ptr<Model> load(const std::string& path);
  static std::unique_ptr<Model> load(std::unique_ptr<WeightSource> source);

  const ModelConfig& config() const { return config_; }
  const ArchSpec& arch() const { return *arch_; }
  const WeightSource& source() const { return *source_; }
  // Auxiliary files of the model (tokenizer.json, generation_config.json, ...); nullopt if absent.
  std::optional<std::string> file_text(const std::string& name) const { return source_->file_text(name); }
  // Bytes of stored weight arrays the matrices read (not counting norms/biases).
  size_t weight_bytes() const;

  const WeightMatrix& embed_tokens() const { return *embed_; }  // vocab x hidden
  const WeightMatrix& lm_head() const { return lm_head_ ? *lm_head_ : *embed_; }  // vocab x hidden
  const std::vector<LayerWeights>& layers() const { return layers_; }
  const std::vector<float>& final_norm() const { return final_norm_; }

 private:
  Model() = default;
  std::unique_ptr<WeightSource> source_;
  ModelConfig config_;
  const ArchSpec* arch_ = nullptr;
  std::unique_ptr<WeightMatrix> embed_, lm_head_;  // lm_head_ null when tied
  std::vector<LayerWeights> layers_;
  std::vector<float> final_norm_;
};

// One sequence being evaluated: the KV cache and activation buffers for a Model, and the
// decoder forward pass (embeddings -> layers (RMSNorm, attention with GQA + RoPE + causal mask +
// KV cache, residual, RMSNorm, SwiGLU MLP, residual) -> final RMSNorm -> lm_head), in fp32
// (runtime/session.cpp). forward() with n > 1 tokens is a batched prefill (every projection is one
// WeightMatrix::matmul with n rows); n = 1 is a decode step. Calls append: the tokens take
// positions position() .. position() + n - 1. Not thread-safe (one Session per thread); the Model
// may be shared and must outlive the Session.
class Session {
 public:
  // max_context: positions the KV cache holds; <= 0 means config().max_position_embeddings.
  // The cache (layers x 2 x kv_heads x max_context x head_dim fp32) is reserved, not touched, here.
  Session(const Model& model, int max_context = 0);

  // Runs `tokens` (ids in [0, vocab)) at positions position() .. position() + n - 1.
  // logits becomes n x vocab (all_logits) or vocab (the last token's), row-major.
  // Throws Error (and changes nothing) when tokens is empty, an id is out of range, or
  // position() + n exceeds max_context().
  void forward(std::span<const int32_t> tokens, std::vector<float>& logits, bool all_logits);

  int position() const { return static_cast<int>(pos_); }
  int max_context() const { return static_cast<int>(capacity_); }
  const Model& model() const { return model_; }
  // Forgets everything: next forward starts at position 0.
  void reset();
  // Keeps the first `pos` positions of the cache (0 <= pos <= position()); throws Error otherwise.
  void truncate(int pos);

  // Calibration hook: when set, forward() calls it with the input of every linear projection just
  // before the projection runs: the weight's Hugging Face name ("model.layers.3.mlp.down_proj.weight";
  // the lm_head as "lm_head.weight", or "model.embed_tokens.weight" when tied), x = n x cols fp32
  // row-major (valid only during the call). Projections sharing one input (q, k, v; gate, up) are
  // each reported, with the same pointer. Unset (the default) costs one branch per projection.
  using Observer = std::function<void(const std::string& weight_name, const float* x, int64_t n, int64_t cols)>;
  void set_observer(Observer observer);

 private:
  void observe(size_t layer, int slot, const float* x, int64_t n, int64_t cols) const;
  void project(const std::vector<std::unique_ptr<WeightMatrix>>& parts, const std::vector<float>& bias,
               const float* in, int64_t n, float* out, int64_t out_width);
  const RopeFrequencies& frequencies(int64_t seq_len);

  const Model& model_;
  int64_t capacity_ = 0;
  int64_t pos_ = 0;
  // Per layer: k and v, each kv_heads x capacity x head_dim (uninitialized until written).
  std::vector<std::unique_ptr<float[]>> k_cache_, v_cache_;
  RopeFrequencies freq_;
  int64_t freq_len_ = -1;  // seq_len freq_ was computed for (-1: none yet)
  DynamicRopeState dynamic_;
  Observer observer_;
  // Per layer, when observed: weight names by slot (0: qkv parts, 1: o, 2: gate_up parts, 3: down).
  std::vector<std::array<std::vector<std::string>, 4>> observed_names_;
  // Activations, resized per call.
  std::vector<float> x_, h_, qkv_, q_, k_, attn_, tmp_, mlp_, act_, cos_, sin_, part_;
};

}  // namespace upg
