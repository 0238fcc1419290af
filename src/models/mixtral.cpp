// MixtralForCausalLM (Mixtral 8x7B, 8x22B): the Mistral attention block with a mixture-of-experts
// MLP in every layer: block_sparse_moe.gate (the router, num_local_experts x hidden) and per
// expert w1 (gate), w3 (up), w2 (down) of intermediate_size. Softmax router, top
// num_experts_per_tok experts, weights always renormalised over the chosen ones. transformers'
// MixtralConfig leaves sliding_window off (null) unless the file sets it; then every layer uses it.
#include "base/error.h"
#include "models/registry.h"

namespace upg {

namespace {
void finish_mixtral(const nlohmann::json& j, const std::string& src, ModelConfig& c) {
  c.sliding_window = read_sliding_window(j, src, std::nullopt);
  if (!windows_from_layer_types(j, src, c) && c.sliding_window)
    for (auto& w : c.layer_window) w = *c.sliding_window;
  MoeConfig& m = c.moe;
  m.num_experts = read_int(j, src, "num_local_experts", 8);
  m.experts_per_token = read_int(j, src, "num_experts_per_tok", 2);
  m.intermediate_size = c.intermediate_size;
  m.normalize_top_k = true;
  m.layers.assign(static_cast<size_t>(c.num_hidden_layers), true);
  check_moe_config(src, c);
}

const std::vector<TensorDecl>& mixtral_tensors() {
  static const std::vector<TensorDecl> t = {
      {"model.embed_tokens.weight", Part::Embed, Dim::Vocab, Dim::Hidden},
      {"model.layers.{L}.input_layernorm.weight", Part::AttnNorm, Dim::Hidden, Dim::None},
      {"model.layers.{L}.self_attn.q_proj.weight", Part::Q, Dim::QOut, Dim::Hidden},
      {"model.layers.{L}.self_attn.k_proj.weight", Part::K, Dim::KvOut, Dim::Hidden},
      {"model.layers.{L}.self_attn.v_proj.weight", Part::V, Dim::KvOut, Dim::Hidden},
      {"model.layers.{L}.self_attn.o_proj.weight", Part::O, Dim::Hidden, Dim::QOut},
      {"model.layers.{L}.post_attention_layernorm.weight", Part::MlpNorm, Dim::Hidden, Dim::None},
      {"model.layers.{L}.block_sparse_moe.gate.weight", Part::Router, Dim::Experts, Dim::Hidden, When::MoeLayer,
       "model.layers.{L}.mlp.gate.weight"},
      {"model.layers.{L}.block_sparse_moe.experts.{E}.w1.weight", Part::ExpertGate, Dim::MoeInter, Dim::Hidden, When::MoeLayer,
       "model.layers.{L}.mlp.experts.gate_up_proj", FusedSlice::ExpertFirstHalf},
      {"model.layers.{L}.block_sparse_moe.experts.{E}.w3.weight", Part::ExpertUp, Dim::MoeInter, Dim::Hidden, When::MoeLayer,
       "model.layers.{L}.mlp.experts.gate_up_proj", FusedSlice::ExpertSecondHalf},
      {"model.layers.{L}.block_sparse_moe.experts.{E}.w2.weight", Part::ExpertDown, Dim::Hidden, Dim::MoeInter, When::MoeLayer,
       "model.layers.{L}.mlp.experts.down_proj", FusedSlice::Expert},
      {"model.norm.weight", Part::FinalNorm, Dim::Hidden, Dim::None},
      {"lm_head.weight", Part::LmHead, Dim::Vocab, Dim::Hidden, When::Untied},
  };
  return t;
}
}  // namespace

const ArchSpec& mixtral_arch() {
  static const ArchSpec spec{
      "MixtralForCausalLM", "mixtral", mixtral_tensors(),
      {"default", "linear", "dynamic", "yarn", "llama3"},
      /*rms_norm_eps=*/1e-5, /*max_position_embeddings=*/4096 * 32, /*original_max=*/0, finish_mixtral};
  return spec;
}

}  // namespace upg
