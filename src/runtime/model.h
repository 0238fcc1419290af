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
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "codecs/weight_matrix.h"
#include "models/model_config.h"
#include "models/registry.h"
#include "models/rope.h"
#include "runtime/weight_source.h"

namespace upg {

// Weights of one decoder layer, as the generic decoder uses them; filled from the architecture's
// tensor table (models/arch_tensors.h) by Part.
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
  // Loads a Hugging Face model directory or a UPG file (see open_weight_source). Throws Error
  // naming the path, the config field or the tensor (with expected and found shape) on any problem.
  static std::unique_ptr<Model> load(const std::string& path);
  static std::unique_ptr<Model> load(std::unique_ptr<WeightSource> source);

  const ModelConfig& config() const { return config_; }
  const ArchSpec& arch() const { return *arch_; }
  const WeightSource& source() const { return *source_; }
  // Every tensor the model was loaded from (the architecture's table expanded for this config).
  const std::vector<ModelTensor>& tensors() const { return tensors_; }
  // Auxiliary files of the model (tokenizer.json, generation_config.json, ...); nullopt if absent.
  std::optional<std::string> file_text(const std::string& name) const { return source_->file_text(name); }
  // Bytes of stored weight arrays the matrices read (not counting norms/biases).
  size_t weight_bytes() const;
  // Number of weights (every tensor of the table, vectors included).
  int64_t parameter_count() const;

  const WeightMatrix& embed_tokens() const { return *embed_; }  // vocab x hidden
  const WeightMatrix& lm_head() const { return lm_head_ ? *lm_head_ : *embed_; }  // vocab x hidden
  const std::vector<LayerWeights>& layers() const { return layers_; }
  const std::vector<float>& final_norm() const { return final_norm_; }

 private:
  Model() = default;
  std::unique_ptr<WeightSource> source_;
  ModelConfig config_;
  const ArchSpec* arch_ = nullptr;
  std::vector<ModelTensor> tensors_;
  std::unique_ptr<WeightMatrix> embed_, lm_head_;  // lm_head_ null when tied
  std::vector<LayerWeights> layers_;
  std::vector<float> final_norm_;
};

}  // namespace upg
