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
  std::string hidden_act = "silu";
  std::string dtype;  // "bfloat16", "float16", "float32" or "" (storage dtype as declared)
  RopeConfig rope;
};

// Parses config.json contents; `source` names the file in errors. Throws Error naming the field for
// missing/invalid values, unsupported activations and unknown architectures (listing the supported ones).
ModelConfig parse_model_config(const nlohmann::json& j, const std::string& source);

}  // namespace upg
