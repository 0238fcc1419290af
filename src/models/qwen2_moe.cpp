// Qwen2MoeForCausalLM (Qwen1.5-MoE, Qwen2-57B-A14B): the Qwen2 attention block (bias on q, k, v)
// with mixture-of-experts MLPs: mlp.gate (router), mlp.experts.{E}.gate_proj/up_proj/down_proj of
// moe_intermediate_size, and a shared expert (mlp.shared_expert.*, shared_expert_intermediate_size)
// scaled by sigmoid(mlp.shared_expert_gate . h). Softmax router, top num_experts_per_tok,
// renormalised only when norm_topk_prob. Layer l is a mixture of experts when l is not in
// mlp_only_layers and (l + 1) % decoder_sparse_step == 0, else a dense MLP of intermediate_size
// (transformers' Qwen2MoeDecoderLayer). Sliding windows as in Qwen2.
#include "base/error.h"
#include "models/registry.h"

namespace upg {

namespace {
void finish_qwen2_moe(const nlohmann::json& j, const std::string& src, ModelConfig& c) {
  c.attention_bias = true;
  const bool use_sw = read_bool(j, src, "use_sliding_window", false);
  c.sliding_window = use_sw ? read_sliding_window(j, src, int64_t{4096}) : std::nullopt;
  if (!windows_from_layer_types(j, src, c) && c.sliding_window) {
    const int64_t max_window_layers = read_int(j, src, "max_window_layers", 28);
    for (int64_t i = std::max<int64_t>(0, max_window_layers); i < c.num_hidden_layers; ++i)
      c.layer_window[static_cast<size_t>(i)] = *c.sliding_window;
  }
  MoeConfig& m = c.moe;
  m.num_experts = read_int(j, src, "num_experts", 60);
  m.experts_per_token = read_int(j, src, "num_experts_per_tok", 4);
  m.intermediate_size = read_int(j, src, "moe_intermediate_size", 1408);
  m.shared_intermediate_size = read_int(j, src, "shared_expert_intermediate_size", 5632);
  m.normalize_top_k = read_bool(j, src, "norm_topk_prob", false);
  const int64_t step = read_int(j, src, "decoder_sparse_step", 1);
  UPG_CHECK(step >= 1, src, ": decoder_sparse_step must be at least 1, found ", step);
  std::vector<bool> dense(static_cast<size_t>(c.num_hidden_layers), false);
  if (j.contains("mlp_only_layers") && !j["mlp_only_layers"].is_null()) {
    UPG_CHECK(j["mlp_only_layers"].is_array(), src, ": mlp_only_layers must be a list of layer indices");
    for (const auto& v : j["mlp_only_layers"]) {
      UPG_CHECK(v.is_number_integer() && v.get<int64_t>() >= 0 && v.get<int64_t>() < c.num_hidden_layers, src,
                ": mlp_only_layers holds ", v.dump(), ", not a layer index in [0, ", c.num_hidden_layers, ")");
      dense[static_cast<size_t>(v.get<int64_t>())] = true;
    }
  }
  m.layers.assign(static_cast<size_t>(c.num_hidden_layers), false);
  for (int64_t l = 0; l < c.num_hidden_layers; ++l)
    m.layers[static_cast<size_t>(l)] = !dense[static_cast<size_t>(l)] && m.num_experts > 0 && (l + 1) % step == 0;
  check_moe_config(src, c);
}

const std::vector<TensorDecl>& qwen2_moe_tensors() {
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
      {"model.layers.{L}.post_attention_layernorm.weight", Part::MlpNorm, Dim::Hidden, Dim::None},
      {"model.layers.{L}.mlp.gate_proj.weight", Part::Gate, Dim::Inter, Dim::Hidden, When::DenseMlpLayer},
      {"model.layers.{L}.mlp.up_proj.weight", Part::Up, Dim::Inter, Dim::Hidden, When::DenseMlpLayer},
      {"model.layers.{L}.mlp.down_proj.weight", Part::Down, Dim::Hidden, Dim::Inter, When::DenseMlpLayer},
      {"model.layers.{L}.mlp.gate.weight", Part::Router, Dim::Experts, Dim::Hidden, When::MoeLayer},
      {"model.layers.{L}.mlp.experts.{E}.gate_proj.weight", Part::ExpertGate, Dim::MoeInter, Dim::Hidden, When::MoeLayer,
       "model.layers.{L}.mlp.experts.gate_up_proj", FusedSlice::ExpertFirstHalf},
      {"model.layers.{L}.mlp.experts.{E}.up_proj.weight", Part::ExpertUp, Dim::MoeInter, Dim::Hidden, When::MoeLayer,
       "model.layers.{L}.mlp.experts.gate_up_proj", FusedSlice::ExpertSecondHalf},
      {"model.layers.{L}.mlp.experts.{E}.down_proj.weight", Part::ExpertDown, Dim::Hidden, Dim::MoeInter, When::MoeLayer,
       "model.layers.{L}.mlp.experts.down_proj", FusedSlice::Expert},
      {"model.layers.{L}.mlp.shared_expert.gate_proj.weight", Part::SharedGate, Dim::SharedInter, Dim::Hidden, When::SharedExpert},
      {"model.layers.{L}.mlp.shared_expert.up_proj.weight", Part::SharedUp, Dim::SharedInter, Dim::Hidden, When::SharedExpert},
      {"model.layers.{L}.mlp.shared_expert.down_proj.weight", Part::SharedDown, Dim::Hidden, Dim::SharedInter, When::SharedExpert},
      {"model.layers.{L}.mlp.shared_expert_gate.weight", Part::SharedExpertGate, Dim::One, Dim::Hidden, When::SharedExpert},
      {"model.norm.weight", Part::FinalNorm, Dim::Hidden, Dim::None},
      {"lm_head.weight", Part::LmHead, Dim::Vocab, Dim::Hidden, When::Untied},
  };
  return t;
}
}  // namespace

const ArchSpec& qwen2_moe_arch() {
  static const ArchSpec spec{
      "Qwen2MoeForCausalLM", "qwen2_moe", qwen2_moe_tensors(),
      {"default", "linear", "dynamic", "yarn", "llama3"},
      /*rms_norm_eps=*/1e-6, /*max_position_embeddings=*/32768, /*original_max=*/0, finish_qwen2_moe};
  return spec;
}

}  // namespace upg
