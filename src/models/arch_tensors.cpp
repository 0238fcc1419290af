#include "models/arch_tensors.h"

#include <cstring>

#include "base/error.h"

namespace upg {

bool is_layer_tensor(const TensorDecl& d) { return std::strstr(d.name, "{L}") != nullptr; }
bool is_expert_tensor(const TensorDecl& d) { return std::strstr(d.name, "{E}") != nullptr; }

int64_t dim_size(Dim d, const ModelConfig& c) {
  const int64_t hd = c.head_dim;
  switch (d) {
    case Dim::None: return 1;
    case Dim::Hidden: return c.hidden_size;
    case Dim::Vocab: return c.vocab_size;
    case Dim::QOut: return c.num_attention_heads * hd;
    case Dim::KvOut: return c.num_key_value_heads * hd;
    case Dim::QkvOut: return (c.num_attention_heads + 2 * c.num_key_value_heads) * hd;
    case Dim::Inter: return c.intermediate_size;
    case Dim::Inter2: return 2 * c.intermediate_size;
    case Dim::Experts: return c.moe.num_experts;
    case Dim::MoeInter: return c.moe.intermediate_size;
    case Dim::SharedInter: return c.moe.shared_intermediate_size;
    case Dim::One: return 1;
    case Dim::MlaQOut: return c.num_attention_heads * c.mla.qk_head_dim();
    case Dim::QLora: return c.mla.q_lora_rank;
    case Dim::KvLora: return c.mla.kv_lora_rank;
    case Dim::KvLoraRope: return c.mla.kv_lora_rank + c.mla.qk_rope_head_dim;
    case Dim::MlaKvBOut: return c.num_attention_heads * (c.mla.qk_nope_head_dim + c.mla.v_head_dim);
    case Dim::MlaOIn: return c.num_attention_heads * c.mla.v_head_dim;
  }
  throw Error("dim_size: unknown dimension");
}

bool is_linear(Part p) { return linear_input(p) != LinearInput::None; }

LinearInput linear_input(Part p) {
  switch (p) {
    case Part::Q: case Part::K: case Part::V: case Part::QKV: return LinearInput::AttnIn;
    case Part::O: return LinearInput::AttnOut;
    case Part::Gate: case Part::Up: case Part::GateUp: return LinearInput::MlpIn;
    case Part::Down: return LinearInput::MlpAct;
    case Part::ExpertGate: case Part::ExpertUp: case Part::SharedGate: case Part::SharedUp: return LinearInput::MlpIn;
    case Part::ExpertDown: case Part::SharedDown: return LinearInput::MlpAct;
    case Part::MlaQ: case Part::MlaQA: case Part::MlaKvA: return LinearInput::AttnIn;
    case Part::MlaQB: return LinearInput::QLatent;
    case Part::MlaKvB: return LinearInput::KvLatent;
    case Part::LmHead: return LinearInput::Final;
    default: return LinearInput::None;
  }
}

const char* part_name(Part p) {
  switch (p) {
    case Part::Embed: return "embed";
    case Part::LmHead: return "lm_head";
    case Part::FinalNorm: return "final_norm";
    case Part::AttnNorm: return "attn_norm";
    case Part::MlpNorm: return "mlp_norm";
    case Part::PostAttnNorm: return "post_attn_norm";
    case Part::PostMlpNorm: return "post_mlp_norm";
    case Part::Q: return "q";
    case Part::K: return "k";
    case Part::V: return "v";
    case Part::QKV: return "qkv";
    case Part::QBias: return "q_bias";
    case Part::KBias: return "k_bias";
    case Part::VBias: return "v_bias";
    case Part::QKVBias: return "qkv_bias";
    case Part::O: return "o";
    case Part::OBias: return "o_bias";
    case Part::Gate: return "gate";
    case Part::Up: return "up";
    case Part::GateUp: return "gate_up";
    case Part::GateBias: return "gate_bias";
    case Part::UpBias: return "up_bias";
    case Part::GateUpBias: return "gate_up_bias";
    case Part::Down: return "down";
    case Part::DownBias: return "down_bias";
    case Part::Router: return "router";
    case Part::ExpertGate: return "expert_gate";
    case Part::ExpertUp: return "expert_up";
    case Part::ExpertDown: return "expert_down";
    case Part::SharedGate: return "shared_gate";
    case Part::SharedUp: return "shared_up";
    case Part::SharedDown: return "shared_down";
    case Part::SharedExpertGate: return "shared_expert_gate";
    case Part::RouterBias: return "router_bias";
    case Part::MlaQ: return "mla_q";
    case Part::MlaQA: return "mla_q_a";
    case Part::MlaQANorm: return "mla_q_a_norm";
    case Part::MlaQB: return "mla_q_b";
    case Part::MlaKvA: return "mla_kv_a";
    case Part::MlaKvANorm: return "mla_kv_a_norm";
    case Part::MlaKvB: return "mla_kv_b";
  }
  return "?";
}

namespace {
bool layer_is_moe(const ModelConfig& c, int64_t layer) {
  return layer >= 0 && static_cast<size_t>(layer) < c.moe.layers.size() && c.moe.layers[static_cast<size_t>(layer)];
}

bool present(When w, const ModelConfig& c, int64_t layer) {
  switch (w) {
    case When::Always: return true;
    case When::AttentionBias: return c.attention_bias;
    case When::OProjBias: return c.o_proj_bias;
    case When::MlpBias: return c.mlp_bias;
    case When::Untied: return !c.tie_word_embeddings;
    case When::DenseMlpLayer: return !layer_is_moe(c, layer);
    case When::MoeLayer: return layer_is_moe(c, layer);
    case When::SharedExpert: return layer_is_moe(c, layer) && c.moe.shared_intermediate_size > 0;
    case When::QLora: return c.mla.q_lora_rank > 0;
    case When::NoQLora: return c.mla.q_lora_rank == 0;
  }
  return false;
}

TensorRole role_of(Part p) {
  if (p == Part::Embed) return TensorRole::Embedding;
  if (p == Part::LmHead) return TensorRole::LmHead;
  // Routing decisions are discrete: the router and the shared expert's gate stay dense.
  if (p == Part::Router || p == Part::SharedExpertGate) return TensorRole::Vector;
  return is_linear(p) ? TensorRole::Linear : TensorRole::Vector;
}

ModelTensor make(const TensorDecl& d, const ModelConfig& c, int64_t layer, int64_t expert = -1) {
  std::string name = d.name;
  if (layer >= 0) {
    const size_t at = name.find("{L}");
    name.replace(at, 3, std::to_string(layer));
  }
  if (expert >= 0) {
    const size_t at = name.find("{E}");
    name.replace(at, 3, std::to_string(expert));
  }
  std::vector<int64_t> shape{dim_size(d.rows, c)};
  if (d.cols != Dim::None) shape.push_back(dim_size(d.cols, c));
  std::string fused;
  if (d.fused) {
    fused = d.fused;
    if (layer >= 0 && fused.find("{L}") != std::string::npos) fused.replace(fused.find("{L}"), 3, std::to_string(layer));
  }
  return {std::move(name), std::move(shape), d.part, layer, role_of(d.part), expert, std::move(fused), d.fused_slice};
}
}  // namespace

std::vector<ModelTensor> expand_tensors(const std::vector<TensorDecl>& table, const ModelConfig& c) {
  std::vector<ModelTensor> out;
  size_t first_layer = table.size();
  for (size_t i = 0; i < table.size(); ++i)
    if (is_layer_tensor(table[i])) {
      first_layer = i;
      break;
    }
  for (size_t i = 0; i < first_layer; ++i)
    if (present(table[i].when, c, -1)) out.push_back(make(table[i], c, -1));
  for (int64_t l = 0; l < c.num_hidden_layers; ++l)
    for (size_t i = 0; i < table.size(); ++i) {
      const TensorDecl& d = table[i];
      if (!is_layer_tensor(d) || !present(d.when, c, l)) continue;
      if (is_expert_tensor(d) && i > 0 && is_expert_tensor(table[i - 1])) continue;  // expanded with its run
      if (!is_expert_tensor(d)) {
        out.push_back(make(d, c, l));
        continue;
      }
      // A run of consecutive per-expert declarations: expert by expert, each in table order.
      size_t end = i;
      while (end < table.size() && is_expert_tensor(table[end])) ++end;
      for (int64_t e = 0; e < c.moe.num_experts; ++e)
        for (size_t k = i; k < end; ++k)
          if (present(table[k].when, c, l)) out.push_back(make(table[k], c, l, e));
    }
  for (size_t i = first_layer; i < table.size(); ++i)
    if (!is_layer_tensor(table[i]) && present(table[i].when, c, -1)) out.push_back(make(table[i], c, -1));
  return out;
}

}  // namespace upg
