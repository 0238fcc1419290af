#include "models/arch_tensors.h"

#include <cstring>

#include "base/error.h"

namespace upg {

bool is_layer_tensor(const TensorDecl& d) { return std::strstr(d.name, "{L}") != nullptr; }

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
  }
  return "?";
}

namespace {
bool present(When w, const ModelConfig& c) {
  switch (w) {
    case When::Always: return true;
    case When::AttentionBias: return c.attention_bias;
    case When::OProjBias: return c.o_proj_bias;
    case When::MlpBias: return c.mlp_bias;
    case When::Untied: return !c.tie_word_embeddings;
  }
  return false;
}

TensorRole role_of(Part p) {
  if (p == Part::Embed) return TensorRole::Embedding;
  if (p == Part::LmHead) return TensorRole::LmHead;
  return is_linear(p) ? TensorRole::Linear : TensorRole::Vector;
}

ModelTensor make(const TensorDecl& d, const ModelConfig& c, int64_t layer) {
  std::string name = d.name;
  if (layer >= 0) {
    const size_t at = name.find("{L}");
    name.replace(at, 3, std::to_string(layer));
  }
  std::vector<int64_t> shape{dim_size(d.rows, c)};
  if (d.cols != Dim::None) shape.push_back(dim_size(d.cols, c));
  return {std::move(name), std::move(shape), d.part, layer, role_of(d.part)};
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
    if (present(table[i].when, c)) out.push_back(make(table[i], c, -1));
  for (int64_t l = 0; l < c.num_hidden_layers; ++l)
    for (const TensorDecl& d : table)
      if (is_layer_tensor(d) && present(d.when, c)) out.push_back(make(d, c, l));
  for (size_t i = first_layer; i < table.size(); ++i)
    if (!is_layer_tensor(table[i]) && present(table[i].when, c)) out.push_back(make(table[i], c, -1));
  return out;
}

}  // namespace upg
