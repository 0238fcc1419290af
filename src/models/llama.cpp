// LlamaForCausalLM (Llama 2, Llama 3.x, and many fine-tunes): separate q/k/v/o and gate/up/down
// projections; config.attention_bias puts a bias on q, k, v and o, config.mlp_bias on gate, up and
// down. Rope: default, linear, dynamic (NTK), yarn, llama3 (Llama 3.1+ smooth frequency scaling).
// Llama 3.2 small models tie lm_head to the embeddings (tie_word_embeddings). No sliding window.
#include "models/registry.h"

namespace upg {

namespace {
void finish_llama(const nlohmann::json& j, const std::string& src, ModelConfig& c) {
  c.attention_bias = c.o_proj_bias = read_bool(j, src, "attention_bias", false);
  c.mlp_bias = read_bool(j, src, "mlp_bias", false);
}
}  // namespace

const ArchSpec& llama_arch() {
  static const ArchSpec spec{
      "LlamaForCausalLM", "llama", llama_layout_tensors(),
      {"default", "linear", "dynamic", "yarn", "llama3"},
      /*rms_norm_eps=*/1e-6, /*max_position_embeddings=*/2048, /*original_max=*/0, finish_llama};
  return spec;
}

}  // namespace upg
