// Grok1ModelForCausalLM (xAI's Grok-1, 314B, in the Hugging Face conversion hpcai-tech/grok-1,
// config model_type "grok-1"). The architecture is the one of xai-org/grok-1's JAX reference
// (model.py):
//  * embeddings multiplied by embedding_multiplier_scale (LanguageModel.__call__);
//  * four RMSNorms per layer (DecoderLayer.__call__): before attention, on the attention output
//    before the residual add, before the MoE, on the MoE output before the residual add; plain
//    weights (scale * x / rms(x), eps 1e-5), stored as ".scale" tensors;
//  * attention (MultiHeadAttention.__call__): GQA without biases, RoPE over the whole head in the
//    rotate-half form, base 10000; scores = (q . k) * attn_output_multiplier (the multiplier is the
//    whole attention scale: there is no 1/sqrt(head_dim) besides it), then soft-capped to
//    max_attn_value * tanh(scores / max_attn_value) (30 in model.py);
//  * a mixture of experts in every layer (MoELayer._inference_call, Router): softmax over the
//    router's logits, the top num_experts_per_tok experts weighted by their softmax probabilities
//    as they are (not renormalised over the chosen ones); each expert
//    linear_1(gelu(linear(x)) * linear_v(x)) with jax.nn.gelu's default tanh approximation
//    (DenseBlock.__call__), all of intermediate_size;
//  * LM head tied to the embeddings (InOutEmbed.decode), logits multiplied by
//    output_multiplier_scale.
// Config fields and their defaults as hpcai-tech's Grok1Config (the values of model.py's run.py):
// attn_output_multiplier 0.08838834764831845, embedding_multiplier_scale 78.38367176906169,
// output_multiplier_scale 0.5773502691896257, max_attn_value 30, num_experts 8 (num_local_experts
// is read when num_experts is absent), num_experts_per_tok 2, rms_norm_eps 1e-5, 8192 positions,
// tied embeddings. hidden_act: when config.json names one it is used; otherwise GELU-tanh as in
// model.py (hpcai-tech's own PyTorch code uses the exact GELU there).
// Grok-2 (architectures "Grok1ForCausalLM") is not this layout: docs/ARCHITECTURES.md, section Grok.
#include <cmath>

#include "base/error.h"
#include "models/registry.h"

namespace upg {

namespace {
void finish_grok1(const nlohmann::json& j, const std::string& src, ModelConfig& c) {
  if (!j.contains("hidden_act") || j["hidden_act"].is_null()) {
    c.hidden_act = "gelu_pytorch_tanh";
    c.block.activation = Activation::GeluTanh;
  }
  c.block.attention_scale = read_positive(j, src, "attn_output_multiplier", 0.08838834764831845);
  c.block.attention_softcap = read_positive(j, src, "max_attn_value", 30.0);
  c.block.embedding_scale = read_positive(j, src, "embedding_multiplier_scale", 78.38367176906169);
  c.block.logit_scale = read_positive(j, src, "output_multiplier_scale", 0.5773502691896257);
  MoeConfig& m = c.moe;
  const bool named = j.contains("num_experts") && !j["num_experts"].is_null();
  m.num_experts = read_int(j, src, named ? "num_experts" : "num_local_experts", 8);
  m.experts_per_token = read_int(j, src, "num_experts_per_tok", 2);
  m.intermediate_size = c.intermediate_size;
  m.normalize_top_k = false;
  m.layers.assign(static_cast<size_t>(c.num_hidden_layers), true);
  check_moe_config(src, c);
}

const std::vector<TensorDecl>& grok1_tensors() {
  static const std::vector<TensorDecl> t = {
      {"model.embed_tokens.weight", Part::Embed, Dim::Vocab, Dim::Hidden},
      {"model.layers.{L}.pre_attn_norm.scale", Part::AttnNorm, Dim::Hidden, Dim::None},
      {"model.layers.{L}.attn.q_proj.weight", Part::Q, Dim::QOut, Dim::Hidden},
      {"model.layers.{L}.attn.k_proj.weight", Part::K, Dim::KvOut, Dim::Hidden},
      {"model.layers.{L}.attn.v_proj.weight", Part::V, Dim::KvOut, Dim::Hidden},
      {"model.layers.{L}.attn.o_proj.weight", Part::O, Dim::Hidden, Dim::QOut},
      {"model.layers.{L}.post_attn_norm.scale", Part::PostAttnNorm, Dim::Hidden, Dim::None},
      {"model.layers.{L}.pre_moe_norm.scale", Part::MlpNorm, Dim::Hidden, Dim::None},
      {"model.layers.{L}.moe_block.gate.weight", Part::Router, Dim::Experts, Dim::Hidden, When::MoeLayer},
      {"model.layers.{L}.moe_block.experts.{E}.linear.weight", Part::ExpertGate, Dim::MoeInter, Dim::Hidden,
       When::MoeLayer},
      {"model.layers.{L}.moe_block.experts.{E}.linear_v.weight", Part::ExpertUp, Dim::MoeInter, Dim::Hidden,
       When::MoeLayer},
      {"model.layers.{L}.moe_block.experts.{E}.linear_1.weight", Part::ExpertDown, Dim::Hidden, Dim::MoeInter,
       When::MoeLayer},
      {"model.layers.{L}.post_moe_norm.scale", Part::PostMlpNorm, Dim::Hidden, Dim::None},
      {"model.norm.scale", Part::FinalNorm, Dim::Hidden, Dim::None},
      {"lm_head.weight", Part::LmHead, Dim::Vocab, Dim::Hidden, When::Untied},
  };
  return t;
}
}  // namespace

const ArchSpec& grok1_arch() {
  static const ArchSpec spec{
      "Grok1ModelForCausalLM", "grok-1", grok1_tensors(), {"default"},
      /*rms_norm_eps=*/1e-5, /*max_position_embeddings=*/8192, /*original_max=*/0, finish_grok1,
      /*default_head_dim=*/0, /*default_tie_word_embeddings=*/true};
  return spec;
}

}  // namespace upg
