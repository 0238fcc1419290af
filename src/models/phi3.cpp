// Phi3ForCausalLM (Phi-3, Phi-3.5, Phi-4, Phi-4-mini): fused qkv_proj [q | k | v] and
// gate_up_proj [gate | up], no biases, optional partial rotary (Phi-4-mini: 0.75), rope "default"
// or "longrope" (older configs say "su"; transformers also maps "yarn" to longrope for Phi-3), and
// a sliding window on every layer when config.sliding_window is set (transformers' Phi3Model
// builds a sliding-window causal mask then).
#include "base/error.h"
#include "models/registry.h"

namespace upg {

namespace {
void finish_phi3(const nlohmann::json& j, const std::string& src, ModelConfig& c) {
  if (c.rope.type == "su" || c.rope.type == "yarn") c.rope.type = "longrope";
  c.sliding_window = read_sliding_window(j, src, std::nullopt);
  if (!windows_from_layer_types(j, src, c) && c.sliding_window)
    for (auto& w : c.layer_window) w = *c.sliding_window;
}
}  // namespace

const ArchSpec& phi3_arch() {
  static const ArchSpec spec{
      "Phi3ForCausalLM", "phi3", /*fused_qkv=*/true, /*fused_gate_up=*/true,
      {"default", "longrope"},
      /*rms_norm_eps=*/1e-5, /*max_position_embeddings=*/4096, /*original_max=*/4096, finish_phi3};
  return spec;
}

}  // namespace upg
