// The one table of supported architectures. Each architecture is described once, in its own file
// (models/<arch>.cpp), by an ArchSpec; the config parser and the generic decoder derive everything
// else (tensor names, biases, attention windows, config defaults) from it. Adding an architecture:
// write models/<arch>.cpp defining its ArchSpec and add one line to the table in registry.cpp.
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "models/arch_tensors.h"
#include "models/model_config.h"

namespace upg {

struct ArchSpec {
  const char* name;        // the "architectures"[0] value: "Phi3ForCausalLM"
  const char* model_type;  // config "model_type": "phi3"
  // Every tensor of a checkpoint (models/arch_tensors.h). Fused projections hold their parts
  // concatenated along the output dimension: QKV = [q (heads*head_dim) | k (kv*head_dim) | v],
  // GateUp = [gate (intermediate) | up (intermediate)].
  const std::vector<TensorDecl>& tensors;
  // Rope types this architecture accepts (after aliases are resolved).
  std::vector<std::string> rope_types;
  // Defaults of the transformers config class for fields config.json may leave out.
  double default_rms_norm_eps;
  int64_t default_max_position_embeddings;
  int64_t default_original_max_position_embeddings;  // 0: none (the field is not part of the class)
  // Architecture rules applied after the common parsing: rope-type aliases, biases, per-layer
  // attention windows. `j` is the raw config.json. Throws Error naming the field.
  void (*finish_config)(const nlohmann::json& j, const std::string& source, ModelConfig& c);
  // Config-class defaults that differ from the common ones.
  int64_t default_head_dim = 0;             // 0: hidden_size / num_attention_heads
  bool default_tie_word_embeddings = false;
};

// Every tensor a checkpoint of this architecture and config holds, in load order
// (expand_tensors of a.tensors).
std::vector<ModelTensor> model_tensors(const ModelConfig& c, const ArchSpec& a);

// nullptr when unknown.
const ArchSpec* find_arch(const std::string& name);
// Throws Error "<source>: unsupported architecture 'X' (supported: A, B, ...)".
const ArchSpec& get_arch(const std::string& name, const std::string& source);
// "Phi3ForCausalLM, LlamaForCausalLM, ..."
std::string supported_architectures();
const std::vector<const ArchSpec*>& all_archs();

// Tensor layouts shared by several architectures (models/layouts.cpp).
// Llama's: separate q/k/v/o and gate/up/down, optional biases (attention_bias, o_proj_bias, mlp_bias).
const std::vector<TensorDecl>& llama_layout_tensors();

// Defined in models/<arch>.cpp.
const ArchSpec& phi3_arch();
const ArchSpec& llama_arch();
const ArchSpec& mistral_arch();
const ArchSpec& qwen2_arch();
const ArchSpec& gemma2_arch();
const ArchSpec& mixtral_arch();
const ArchSpec& qwen2_moe_arch();
const ArchSpec& deepseek_v3_arch();
const ArchSpec& grok1_arch();

// Helpers for finish_config implementations (models/model_config.cpp).
// Windows from an explicit "layer_types" list ("sliding_attention" / "full_attention"), if present;
// returns false when config.json has no layer_types.
bool windows_from_layer_types(const nlohmann::json& j, const std::string& source, ModelConfig& c);
// The config's sliding_window: absent -> `def`, null -> nullopt, else a positive integer.
std::optional<int64_t> read_sliding_window(const nlohmann::json& j, const std::string& source,
                                           std::optional<int64_t> def);
// Validates c.moe after an architecture filled it (experts in [1, 4096], 1 <= top-k <= experts,
// positive expert sizes): throws Error naming the config field.
void check_moe_config(const std::string& source, const ModelConfig& c);
// A positive finite number; absent or null: `def`. Throws Error naming the field otherwise.
double read_positive(const nlohmann::json& j, const std::string& source, const char* key, double def);
bool read_bool(const nlohmann::json& j, const std::string& source, const char* key, bool def);
int64_t read_int(const nlohmann::json& j, const std::string& source, const char* key, int64_t def);

}  // namespace upg
