// Qwen2ForCausalLM (Qwen2, Qwen2.5): Llama layout with a bias on q, k and v (never on o or the
// MLP). Sliding-window attention only when use_sliding_window is true, and then (transformers'
// Qwen2Config) on layers i >= max_window_layers, unless layer_types lists them explicitly.
#include "base/error.h"
#include "models/registry.h"

namespace upg {

namespace {
void finish_qwen2(const nlohmann::json& j, const std::string& src, ModelConfig& c) {
  c.attention_bias = true;
  const bool use_sw = read_bool(j, src, "use_sliding_window", false);
  c.sliding_window = use_sw ? read_sliding_window(j, src, int64_t{4096}) : std::nullopt;
  if (windows_from_layer_types(j, src, c)) return;
  const int64_t max_window_layers = read_int(j, src, "max_window_layers", 28);
  UPG_CHECK(max_window_layers >= 0, src, ": max_window_layers must not be negative, found ", max_window_layers);
  if (c.sliding_window)
    for (int64_t i = max_window_layers; i < c.num_hidden_layers; ++i) c.layer_window[i] = *c.sliding_window;
}
}  // namespace

const ArchSpec& qwen2_arch() {
  static const ArchSpec spec{
      "Qwen2ForCausalLM", "qwen2", llama_layout_tensors(),
      {"default", "linear", "dynamic", "yarn", "llama3"},
      /*rms_norm_eps=*/1e-6, /*max_position_embeddings=*/32768, /*original_max=*/0, finish_qwen2};
  return spec;
}

}  // namespace upg
