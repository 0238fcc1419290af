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

// Fused qkv_proj and gate_up_proj.
const std::vector<TensorDecl>& phi3_tensors() {
  static const std::vector<TensorDecl> t = {
      {"model.embed_tokens.weight", Part::Embed, Dim::Vocab, Dim::Hidden},
      {"model.layers.{L}.input_layernorm.weight", Part::AttnNorm, Dim::Hidden, Dim::None},
      {"model.layers.{L}.self_attn.qkv_proj.weight", Part::QKV, Dim::QkvOut, Dim::Hidden},
      {"model.layers.{L}.self_attn.qkv_proj.bias", Part::QKVBias, Dim::QkvOut, Dim::None, When::AttentionBias},
      {"model.layers.{L}.self_attn.o_proj.weight", Part::O, Dim::Hidden, Dim::QOut},
      {"model.layers.{L}.self_attn.o_proj.bias", Part::OBias, Dim::Hidden, Dim::None, When::OProjBias},
      {"model.layers.{L}.post_attention_layernorm.weight", Part::MlpNorm, Dim::Hidden, Dim::None},
      {"model.layers.{L}.mlp.gate_up_proj.weight", Part::GateUp, Dim::Inter2, Dim::Hidden},
      {"model.layers.{L}.mlp.gate_up_proj.bias", Part::GateUpBias, Dim::Inter2, Dim::None, When::MlpBias},
      {"model.layers.{L}.mlp.down_proj.weight", Part::Down, Dim::Hidden, Dim::Inter},
      {"model.layers.{L}.mlp.down_proj.bias", Part::DownBias, Dim::Hidden, Dim::None, When::MlpBias},
      {"model.norm.weight", Part::FinalNorm, Dim::Hidden, Dim::None},
      {"lm_head.weight", Part::LmHead, Dim::Vocab, Dim::Hidden, When::Untied},
  };
  return t;
}
}  // namespace

const ArchSpec& phi3_arch() {
  static const ArchSpec spec{
      "Phi3ForCausalLM", "phi3", phi3_tensors(),
      {"default", "longrope"},
      /*rms_norm_eps=*/1e-5, /*max_position_embeddings=*/4096, /*original_max=*/4096, finish_phi3};
  return spec;
}

}  // namespace upg
