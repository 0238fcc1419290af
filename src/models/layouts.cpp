// Tensor tables shared by several architectures. An architecture with its own layout declares it
// in its own file (models/phi3.cpp).
#include "models/registry.h"

namespace upg {

const std::vector<TensorDecl>& llama_layout_tensors() {
  static const std::vector<TensorDecl> t = {
      {"model.embed_tokens.weight", Part::Embed, Dim::Vocab, Dim::Hidden},
      {"model.layers.{L}.input_layernorm.weight", Part::AttnNorm, Dim::Hidden, Dim::None},
      {"model.layers.{L}.self_attn.q_proj.weight", Part::Q, Dim::QOut, Dim::Hidden},
      {"model.layers.{L}.self_attn.k_proj.weight", Part::K, Dim::KvOut, Dim::Hidden},
      {"model.layers.{L}.self_attn.v_proj.weight", Part::V, Dim::KvOut, Dim::Hidden},
      {"model.layers.{L}.self_attn.q_proj.bias", Part::QBias, Dim::QOut, Dim::None, When::AttentionBias},
      {"model.layers.{L}.self_attn.k_proj.bias", Part::KBias, Dim::KvOut, Dim::None, When::AttentionBias},
      {"model.layers.{L}.self_attn.v_proj.bias", Part::VBias, Dim::KvOut, Dim::None, When::AttentionBias},
      {"model.layers.{L}.self_attn.o_proj.weight", Part::O, Dim::Hidden, Dim::QOut},
      {"model.layers.{L}.self_attn.o_proj.bias", Part::OBias, Dim::Hidden, Dim::None, When::OProjBias},
      {"model.layers.{L}.post_attention_layernorm.weight", Part::MlpNorm, Dim::Hidden, Dim::None},
      {"model.layers.{L}.mlp.gate_proj.weight", Part::Gate, Dim::Inter, Dim::Hidden},
      {"model.layers.{L}.mlp.up_proj.weight", Part::Up, Dim::Inter, Dim::Hidden},
      {"model.layers.{L}.mlp.gate_proj.bias", Part::GateBias, Dim::Inter, Dim::None, When::MlpBias},
      {"model.layers.{L}.mlp.up_proj.bias", Part::UpBias, Dim::Inter, Dim::None, When::MlpBias},
      {"model.layers.{L}.mlp.down_proj.weight", Part::Down, Dim::Hidden, Dim::Inter},
      {"model.layers.{L}.mlp.down_proj.bias", Part::DownBias, Dim::Hidden, Dim::None, When::MlpBias},
      {"model.norm.weight", Part::FinalNorm, Dim::Hidden, Dim::None},
      {"lm_head.weight", Part::LmHead, Dim::Vocab, Dim::Hidden, When::Untied},
  };
  return t;
}

}  // namespace upg
