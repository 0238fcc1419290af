// DeepseekV3ForCausalLM (DeepSeek V3, R1, and their distillations into the same architecture).
//  * Attention: multi-head latent attention (ModelConfig::mla): q through a LoRA (q_a_proj,
//    q_a_layernorm, q_b_proj) or a plain q_proj, keys and values from the compressed latent
//    (kv_a_proj_with_mqa, kv_a_layernorm, kv_b_proj); the cache holds the latent, not K and V.
//    Softmax scale qk_head_dim^-1/2, times mscale^2 with yarn rope scaling when mscale_all_dim is
//    set (mscale = 0.1 mscale_all_dim ln(factor) + 1), as transformers' DeepseekV3Attention.
//  * MLP: dense in the first first_k_dense_replace layers, then a mixture of n_routed_experts
//    experts of moe_intermediate_size (sigmoid router with e_score_correction_bias, group-limited
//    top-k: n_group groups, topk_group kept, num_experts_per_tok experts; weights renormalised
//    when norm_topk_prob, times routed_scaling_factor) plus n_shared_experts shared experts as one
//    MLP of n_shared_experts * moe_intermediate_size.
//  * The multi-token-prediction layer that checkpoints hold after the last layer
//    (model.layers.<num_hidden_layers>.*) is not part of the table and is skipped on load.
// Defaults from transformers' DeepseekV3Config.
#include <cmath>

#include "base/error.h"
#include "models/registry.h"

namespace upg {

namespace {
void finish_deepseek_v3(const nlohmann::json& j, const std::string& src, ModelConfig& c) {
  UPG_CHECK(!read_bool(j, src, "attention_bias", false), src,
            ": attention_bias = true is not supported for DeepseekV3ForCausalLM");
  MlaConfig& a = c.mla;
  a.q_lora_rank = j.contains("q_lora_rank") && j["q_lora_rank"].is_null() ? 0 : read_int(j, src, "q_lora_rank", 1536);
  a.kv_lora_rank = read_int(j, src, "kv_lora_rank", 512);
  a.qk_nope_head_dim = read_int(j, src, "qk_nope_head_dim", 128);
  a.qk_rope_head_dim = read_int(j, src, "qk_rope_head_dim", 64);
  a.v_head_dim = read_int(j, src, "v_head_dim", 128);
  a.rope_interleave = read_bool(j, src, "rope_interleave", true);
  for (auto [v, name] : {std::pair{a.q_lora_rank, "q_lora_rank"}, {a.kv_lora_rank, "kv_lora_rank"},
                         {a.qk_nope_head_dim, "qk_nope_head_dim"}, {a.qk_rope_head_dim, "qk_rope_head_dim"},
                         {a.v_head_dim, "v_head_dim"}})
    UPG_CHECK(v >= 0 && v <= kMaxModelDim, src, ": ", name, " must be in [0, ", kMaxModelDim, "], found ", v);
  UPG_CHECK(a.kv_lora_rank > 0 && a.v_head_dim > 0 && a.qk_rope_head_dim >= 2 && a.qk_rope_head_dim % 2 == 0, src,
            ": kv_lora_rank and v_head_dim must be positive and qk_rope_head_dim even and positive");
  // RoPE covers the rope part of each head only (transformers sets head_dim = qk_rope_head_dim).
  c.head_dim = a.qk_rope_head_dim;
  c.rotary_dim = a.qk_rope_head_dim;
  // Attention scale, with yarn's mscale_all_dim correction.
  double scale = 1.0 / std::sqrt(static_cast<double>(a.qk_head_dim()));
  if (c.rope.type == "yarn" && c.rope.mscale_all_dim && *c.rope.mscale_all_dim != 0 && c.rope.factor &&
      *c.rope.factor > 1) {
    const double m = 0.1 * *c.rope.mscale_all_dim * std::log(*c.rope.factor) + 1.0;
    scale *= m * m;
  }
  c.block.attention_scale = scale;

  for (const char* key : {"scoring_func", "topk_method"}) {
    if (!j.contains(key) || j[key].is_null()) continue;
    UPG_CHECK(j[key].is_string(), src, ": ", key, " must be a string");
    const std::string v = j[key].get<std::string>();
    UPG_CHECK(v == (std::string(key) == "scoring_func" ? "sigmoid" : "noaux_tc"), src, ": ", key, " '", v,
              "' is not supported (DeepSeek V3 uses sigmoid / noaux_tc)");
  }
  MoeConfig& m = c.moe;
  m.router = RouterKind::SigmoidGrouped;
  m.num_experts = read_int(j, src, "n_routed_experts", 256);
  m.experts_per_token = read_int(j, src, "num_experts_per_tok", 8);
  m.intermediate_size = read_int(j, src, "moe_intermediate_size", 2048);
  const int64_t shared = j.contains("n_shared_experts") && j["n_shared_experts"].is_null()
                             ? 0 : read_int(j, src, "n_shared_experts", 1);
  UPG_CHECK(shared >= 0 && shared <= 64, src, ": n_shared_experts must be in [0, 64], found ", shared);
  m.shared_intermediate_size = shared * m.intermediate_size;
  m.normalize_top_k = read_bool(j, src, "norm_topk_prob", true);
  m.groups = read_int(j, src, "n_group", 8);
  m.top_groups = read_int(j, src, "topk_group", 4);
  UPG_CHECK(m.groups >= 1 && m.num_experts % m.groups == 0 && m.num_experts / m.groups >= 2, src, ": n_group ",
            m.groups, " must divide n_routed_experts ", m.num_experts, " into groups of at least 2");
  UPG_CHECK(m.top_groups >= 1 && m.top_groups <= m.groups, src, ": topk_group must be in [1, n_group], found ",
            m.top_groups);
  UPG_CHECK(m.experts_per_token <= m.top_groups * (m.num_experts / m.groups), src, ": num_experts_per_tok ",
            m.experts_per_token, " exceeds the experts of the topk_group groups kept");
  m.routed_scale = read_positive(j, src, "routed_scaling_factor", 2.5);
  const int64_t first_dense = read_int(j, src, "first_k_dense_replace", 3);
  UPG_CHECK(first_dense >= 0, src, ": first_k_dense_replace must not be negative");
  m.layers.assign(static_cast<size_t>(c.num_hidden_layers), false);
  for (int64_t l = first_dense; l < c.num_hidden_layers; ++l) m.layers[static_cast<size_t>(l)] = true;
  check_moe_config(src, c);
}

const std::vector<TensorDecl>& deepseek_v3_tensors() {
  static const std::vector<TensorDecl> t = {
      {"model.embed_tokens.weight", Part::Embed, Dim::Vocab, Dim::Hidden},
      {"model.layers.{L}.input_layernorm.weight", Part::AttnNorm, Dim::Hidden, Dim::None},
      {"model.layers.{L}.self_attn.q_proj.weight", Part::MlaQ, Dim::MlaQOut, Dim::Hidden, When::NoQLora},
      {"model.layers.{L}.self_attn.q_a_proj.weight", Part::MlaQA, Dim::QLora, Dim::Hidden, When::QLora},
      {"model.layers.{L}.self_attn.q_a_layernorm.weight", Part::MlaQANorm, Dim::QLora, Dim::None, When::QLora},
      {"model.layers.{L}.self_attn.q_b_proj.weight", Part::MlaQB, Dim::MlaQOut, Dim::QLora, When::QLora},
      {"model.layers.{L}.self_attn.kv_a_proj_with_mqa.weight", Part::MlaKvA, Dim::KvLoraRope, Dim::Hidden},
      {"model.layers.{L}.self_attn.kv_a_layernorm.weight", Part::MlaKvANorm, Dim::KvLora, Dim::None},
      {"model.layers.{L}.self_attn.kv_b_proj.weight", Part::MlaKvB, Dim::MlaKvBOut, Dim::KvLora},
      {"model.layers.{L}.self_attn.o_proj.weight", Part::O, Dim::Hidden, Dim::MlaOIn},
      {"model.layers.{L}.post_attention_layernorm.weight", Part::MlpNorm, Dim::Hidden, Dim::None},
      {"model.layers.{L}.mlp.gate_proj.weight", Part::Gate, Dim::Inter, Dim::Hidden, When::DenseMlpLayer},
      {"model.layers.{L}.mlp.up_proj.weight", Part::Up, Dim::Inter, Dim::Hidden, When::DenseMlpLayer},
      {"model.layers.{L}.mlp.down_proj.weight", Part::Down, Dim::Hidden, Dim::Inter, When::DenseMlpLayer},
      {"model.layers.{L}.mlp.gate.weight", Part::Router, Dim::Experts, Dim::Hidden, When::MoeLayer},
      {"model.layers.{L}.mlp.gate.e_score_correction_bias", Part::RouterBias, Dim::Experts, Dim::None, When::MoeLayer},
      {"model.layers.{L}.mlp.experts.{E}.gate_proj.weight", Part::ExpertGate, Dim::MoeInter, Dim::Hidden, When::MoeLayer,
       "model.layers.{L}.mlp.experts.gate_up_proj", FusedSlice::ExpertFirstHalf},
      {"model.layers.{L}.mlp.experts.{E}.up_proj.weight", Part::ExpertUp, Dim::MoeInter, Dim::Hidden, When::MoeLayer,
       "model.layers.{L}.mlp.experts.gate_up_proj", FusedSlice::ExpertSecondHalf},
      {"model.layers.{L}.mlp.experts.{E}.down_proj.weight", Part::ExpertDown, Dim::Hidden, Dim::MoeInter, When::MoeLayer,
       "model.layers.{L}.mlp.experts.down_proj", FusedSlice::Expert},
      {"model.layers.{L}.mlp.shared_experts.gate_proj.weight", Part::SharedGate, Dim::SharedInter, Dim::Hidden, When::SharedExpert},
      {"model.layers.{L}.mlp.shared_experts.up_proj.weight", Part::SharedUp, Dim::SharedInter, Dim::Hidden, When::SharedExpert},
      {"model.layers.{L}.mlp.shared_experts.down_proj.weight", Part::SharedDown, Dim::Hidden, Dim::SharedInter, When::SharedExpert},
      {"model.norm.weight", Part::FinalNorm, Dim::Hidden, Dim::None},
      {"lm_head.weight", Part::LmHead, Dim::Vocab, Dim::Hidden, When::Untied},
  };
  return t;
}
}  // namespace

const ArchSpec& deepseek_v3_arch() {
  static const ArchSpec spec{
      "DeepseekV3ForCausalLM", "deepseek_v3", deepseek_v3_tensors(),
      {"default", "linear", "dynamic", "yarn", "llama3"},
      /*rms_norm_eps=*/1e-6, /*max_position_embeddings=*/4096, /*original_max=*/0, finish_deepseek_v3};
  return spec;
}

}  // namespace upg
