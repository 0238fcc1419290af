// Gemma2ForCausalLM (Gemma 2: 2B, 9B, 27B). Differs from Llama in its block:
//  * RMSNorm scales by (1 + weight) (weights stored as offsets from 1);
//  * four norms per layer: input_layernorm before attention, post_attention_layernorm on the
//    attention output before the residual add, pre_feedforward_layernorm before the MLP,
//    post_feedforward_layernorm on the MLP output before the residual add;
//  * GeGLU MLP (config.hidden_activation, gelu_pytorch_tanh);
//  * attention scale query_pre_attn_scalar^-1/2 instead of head_dim^-1/2, scores soft-capped by
//    attn_logit_softcapping, logits by final_logit_softcapping (cap * tanh(x / cap));
//  * embeddings multiplied by sqrt(hidden_size), tied LM head (the config class default);
//  * layers alternate sliding-window (even layers, window sliding_window) and global attention,
//    unless config.layer_types lists them.
// Config-class defaults from transformers' Gemma2Config (head_dim 256, rms_norm_eps 1e-6, 8192
// positions, tied embeddings).
#include <cmath>

#include "base/error.h"
#include "models/registry.h"

namespace upg {

namespace {
// A soft-capping value: absent = the default, null = off, otherwise positive.
double read_softcap(const nlohmann::json& j, const std::string& src, const char* key, double def) {
  if (j.contains(key) && j[key].is_null()) return 0;
  return read_positive(j, src, key, def);
}

void finish_gemma2(const nlohmann::json& j, const std::string& src, ModelConfig& c) {
  c.attention_bias = c.o_proj_bias = read_bool(j, src, "attention_bias", false);
  std::string act = "gelu_pytorch_tanh";
  if (j.contains("hidden_activation") && !j["hidden_activation"].is_null()) {
    UPG_CHECK(j["hidden_activation"].is_string(), src, ": hidden_activation must be a string");
    act = j["hidden_activation"].get<std::string>();
  }
  c.hidden_act = act;
  c.block.activation = parse_activation(act, src, "hidden_activation");
  c.block.norm_weight_offset = 1;
  c.block.attention_scale = 1.0 / std::sqrt(read_positive(j, src, "query_pre_attn_scalar", 256));
  c.block.attention_softcap = read_softcap(j, src, "attn_logit_softcapping", 50.0);
  c.block.final_softcap = read_softcap(j, src, "final_logit_softcapping", 30.0);
  c.block.embedding_scale = std::sqrt(static_cast<double>(c.hidden_size));
  c.sliding_window = read_sliding_window(j, src, int64_t{4096});
  if (windows_from_layer_types(j, src, c)) return;
  if (c.sliding_window)
    for (int64_t i = 0; i < c.num_hidden_layers; i += 2) c.layer_window[static_cast<size_t>(i)] = *c.sliding_window;
}

const std::vector<TensorDecl>& gemma2_tensors() {
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
      {"model.layers.{L}.post_attention_layernorm.weight", Part::PostAttnNorm, Dim::Hidden, Dim::None},
      {"model.layers.{L}.pre_feedforward_layernorm.weight", Part::MlpNorm, Dim::Hidden, Dim::None},
      {"model.layers.{L}.mlp.gate_proj.weight", Part::Gate, Dim::Inter, Dim::Hidden},
      {"model.layers.{L}.mlp.up_proj.weight", Part::Up, Dim::Inter, Dim::Hidden},
      {"model.layers.{L}.mlp.down_proj.weight", Part::Down, Dim::Hidden, Dim::Inter},
      {"model.layers.{L}.post_feedforward_layernorm.weight", Part::PostMlpNorm, Dim::Hidden, Dim::None},
      {"model.norm.weight", Part::FinalNorm, Dim::Hidden, Dim::None},
      {"lm_head.weight", Part::LmHead, Dim::Vocab, Dim::Hidden, When::Untied},
  };
  return t;
}
}  // namespace

const ArchSpec& gemma2_arch() {
  static const ArchSpec spec{
      "Gemma2ForCausalLM", "gemma2", gemma2_tensors(),
      {"default", "linear", "dynamic", "yarn", "llama3"},
      /*rms_norm_eps=*/1e-6, /*max_position_embeddings=*/8192, /*original_max=*/0, finish_gemma2,
      /*default_head_dim=*/256, /*default_tie_word_embeddings=*/true};
  return spec;
}

}  // namespace upg
