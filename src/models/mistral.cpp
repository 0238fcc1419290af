// MistralForCausalLM: the Llama layout without biases; head_dim may be explicit (Mistral-Nemo).
// transformers' MistralConfig defaults sliding_window to 4096 when the key is absent; null means
// full attention. When set, every layer attends to the last sliding_window positions only.
#include "models/registry.h"

namespace upg {

namespace {
void finish_mistral(const nlohmann::json& j, const std::string& src, ModelConfig& c) {
  c.sliding_window = read_sliding_window(j, src, int64_t{4096});
  if (!windows_from_layer_types(j, src, c) && c.sliding_window)
    for (auto& w : c.layer_window) w = *c.sliding_window;
}
}  // namespace

const ArchSpec& mistral_arch() {
  static const ArchSpec spec{
      "MistralForCausalLM", "mistral", llama_layout_tensors(),
      {"default", "linear", "dynamic", "yarn", "llama3"},
      /*rms_norm_eps=*/1e-6, /*max_position_embeddings=*/4096 * 32, /*original_max=*/0, finish_mistral};
  return spec;
}

}  // namespace upg
