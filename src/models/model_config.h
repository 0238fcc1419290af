// The model hyper-parameters the engine needs, parsed from a Hugging Face config.json in either
// style: older (top-level rope_theta, rope_scaling {type|rope_type, ...}, torch_dtype,
// partial_rotary_factor) or newer (rope_parameters {rope_type, rope_theta, partial_rotary_factor,
// factor, ...}, dtype). Values missing from the file take the defaults of the architecture's
// transformers config class (see models/<arch>.cpp).
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "kernels/activation_kind.h"

namespace upg {

// Rotary position embedding parameters, standardized like transformers' standardize_rope_params.
struct RopeConfig {
  // "default", "linear", "dynamic", "yarn", "longrope" (also for Phi-3's older "su"), "llama3".
  std::string type = "default";
  double theta = 10000.0;
  double partial_rotary_factor = 1.0;
  std::optional<double> factor;            // linear, dynamic, yarn, llama3 (longrope: optional)
  int64_t original_max_position_embeddings = 0;  // yarn, longrope, llama3
  std::optional<double> attention_factor;  // yarn, longrope
  std::optional<double> beta_fast, beta_slow, mscale, mscale_all_dim;  // yarn
  bool truncate = true;                    // yarn
  std::vector<double> short_factor, long_factor;  // longrope: rotary_dim / 2 values each
  double low_freq_factor = 1.0, high_freq_factor = 4.0;  // llama3
};

// Caps on the sizes a config.json may give (checked by parse_model_config before anything is
// sized from them; real models are far below): hidden / intermediate sizes, head counts and
// head_dim; layers; vocabulary; positions.
inline constexpr int64_t kMaxModelDim = int64_t{1} << 20;
inline constexpr int64_t kMaxModelLayers = 4096;
inline constexpr int64_t kMaxModelVocab = int64_t{1} << 22;
inline constexpr int64_t kMaxModelContext = int64_t{1} << 30;

// How the generic decoder block computes, beyond what the tensor table says (the table decides
// which norms exist: post-attention / post-MLP norms when it lists them). Set by the
// architecture's finish_config from config.json.
struct BlockConfig {
  Activation activation = Activation::Silu;
  float norm_weight_offset = 0;  // RMSNorm multiplies by (offset + weight): 1 for Gemma
  double attention_scale = 0;    // 0: 1 / sqrt(head_dim)
  double attention_softcap = 0;  // > 0: scores -> cap * tanh(scores / cap) (Gemma 2)
  double final_softcap = 0;      // > 0: the same on the logits
  double embedding_scale = 1;    // the embedding rows are multiplied by this (Gemma: sqrt(hidden_size))
  double logit_scale = 1;        // the logits are multiplied by this before final_softcap (Grok-1)
};

// Mixture-of-experts MLP layers (Mixtral, Qwen2-MoE): per token, the router's softmax over the
// experts picks the top experts_per_token, their weights renormalised to sum to 1 when
// normalize_top_k; the token's MLP output is the weighted sum of those experts' gated MLPs, plus
// the shared expert's output (times sigmoid(shared expert gate . h) when the gate exists).
// Softmax: softmax over the router's logits, top k. SigmoidGrouped (DeepSeek V3's noaux_tc):
// sigmoid scores; experts chosen by score + correction bias within the top_groups groups of
// highest (sum of each group's two best) biased scores; weights are the unbiased scores.
// Either way the chosen weights are renormalised when normalize_top_k, then multiplied by
// routed_scale.
enum class RouterKind { Softmax, SigmoidGrouped };

struct MoeConfig {
  RouterKind router = RouterKind::Softmax;
  int64_t groups = 1, top_groups = 1;    // SigmoidGrouped: experts in `groups` equal groups
  double routed_scale = 1.0;
  int64_t num_experts = 0;               // 0: no MoE layers
  int64_t experts_per_token = 0;
  int64_t intermediate_size = 0;         // of each routed expert
  int64_t shared_intermediate_size = 0;  // 0: no shared expert
  bool normalize_top_k = true;
  std::vector<bool> layers;              // per layer: a mixture of experts (true) or a dense MLP
};

// Multi-head latent attention (DeepSeek V2/V3). Per token: q = W_qb RMSNorm(W_qa h) (or W_q h
// without q_lora_rank), per head [nope | rope]; [c | k_rope] = W_kva h, c normalised; per head
// [k_nope | v] = W_kvb c; k_rope shared by all heads; RoPE on the rope parts (rope_interleave:
// pairs (x0, x1), (x2, x3)... are taken as the halves [x0 x2 ... | x1 x3 ...] first). The cache
// holds only [c | k_rope] per position (kv_lora_rank + qk_rope_head_dim values): attention runs in
// the absorbed form, q_nope mapped through W_uk^T into the latent space and the latent output
// through W_uv, which equals the expanded form exactly up to rounding.
struct MlaConfig {
  int64_t q_lora_rank = 0;  // 0: a plain q_proj
  int64_t kv_lora_rank = 0; // 0: not MLA
  int64_t qk_nope_head_dim = 0, qk_rope_head_dim = 0, v_head_dim = 0;
  bool rope_interleave = true;
  bool enabled() const { return kv_lora_rank > 0; }
  int64_t qk_head_dim() const { return qk_nope_head_dim + qk_rope_head_dim; }
};

struct ModelConfig {
  std::string architecture;  // "Phi3ForCausalLM", ...
  std::string model_type;    // "phi3", ...
  int64_t hidden_size = 0;
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;  // defaults to num_attention_heads
  int64_t head_dim = 0;             // explicit, or hidden_size / num_attention_heads
  int64_t rotary_dim = 0;           // int(head_dim * rope.partial_rotary_factor), even
  int64_t intermediate_size = 0;
  int64_t vocab_size = 0;
  double rms_norm_eps = 1e-6;
  int64_t max_position_embeddings = 0;
  int64_t original_max_position_embeddings = 0;  // 0 when absent
  bool tie_word_embeddings = false;
  std::optional<int32_t> bos_token_id;
  std::vector<int32_t> eos_token_ids;  // config.json's eos_token_id (int or list)
  std::optional<int32_t> pad_token_id;
  // Per layer: attention window in tokens (a query at position p sees keys in (p - w, p]); 0 = full.
  std::vector<int64_t> layer_window;
  std::optional<int64_t> sliding_window;  // config value, when used
  bool attention_bias = false;  // bias on q/k/v projections
  bool o_proj_bias = false;     // bias on the attention output projection
  bool mlp_bias = false;        // bias on gate/up/down projections
  std::string hidden_act = "silu";  // as config.json names it; block.activation is what it means
  BlockConfig block;
  MoeConfig moe;
  MlaConfig mla;
  std::string dtype;  // "bfloat16", "float16", "float32" or "" (storage dtype as declared)
  RopeConfig rope;
};

// What the KV cache holds per position and layer: kv_heads rows of head_dim values for the keys and
// as many for the values, or only key rows (MLA's latent rows, whose first kv_lora_rank values are
// also the values).
struct KvGeometry {
  int64_t kv_heads, head_dim;
  bool keys_only;
};
KvGeometry kv_geometry(const ModelConfig& c);

// Parses config.json contents; `source` names the file in errors. Throws Error naming the field for
// missing/invalid values, unsupported activations and unknown architectures (listing the supported ones).
ModelConfig parse_model_config(const nlohmann::json& j, const std::string& source);

// The activation transformers' ACT2FN gives for `name`: "silu" and "swish" (Silu),
// "gelu_pytorch_tanh" and "gelu_new" (GeluTanh), "gelu" (Gelu). Throws Error naming `field` and the
// supported names otherwise.
Activation parse_activation(const std::string& name, const std::string& source, const char* field);

}  // namespace upg
