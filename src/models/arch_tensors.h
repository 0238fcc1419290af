// The tensor table of an architecture: every tensor a checkpoint of that architecture holds, with
// its Hugging Face name, its shape (in terms of the config) and what it is for in the generic
// decoder. Each architecture declares its table once (models/<arch>.cpp, or a layout shared by a
// family in models/layouts.cpp); the loader (runtime/model.cpp), the converter's plan
// (convert/converter.cpp), `upg synth` (convert/synth.cpp) and the calibration observer
// (runtime/engine.cpp) all derive their lists from it through model_tensors() / expand_tensors().
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "models/model_config.h"

namespace upg {

// What a tensor is in the decoder. Linear parts are (out_features x in_features) matrices.
enum class Part {
  Embed,        // vocab x hidden lookup table (also the LM head when embeddings are tied)
  LmHead,       // vocab x hidden, untied
  FinalNorm,    // hidden
  AttnNorm,     // hidden: norm before attention
  MlpNorm,      // hidden: norm before the MLP
  Q, K, V,      // split attention input projections
  QKV,          // fused [q | k | v]
  QBias, KBias, VBias, QKVBias,
  O, OBias,     // attention output projection
  Gate, Up,     // split MLP input projections
  GateUp,       // fused [gate | up]
  GateBias, UpBias, GateUpBias,
  Down, DownBias,
};

// A dimension, resolved against a ModelConfig by dim_size().
enum class Dim {
  None,    // the second dimension of a vector
  Hidden,  // hidden_size
  Vocab,   // vocab_size
  QOut,    // num_attention_heads * head_dim
  KvOut,   // num_key_value_heads * head_dim
  QkvOut,  // QOut + 2 * KvOut
  Inter,   // intermediate_size
  Inter2,  // 2 * intermediate_size
};

// When a tensor is present.
enum class When {
  Always,
  AttentionBias,  // config.attention_bias (q, k, v biases)
  OProjBias,      // config.o_proj_bias
  MlpBias,        // config.mlp_bias
  Untied,         // !config.tie_word_embeddings
};

// Which activation feeds a linear part (what the calibration observer reports for it).
enum class LinearInput {
  AttnIn,   // the normed hidden state before attention: q, k, v
  AttnOut,  // the attention output (heads concatenated): o
  MlpIn,    // the normed hidden state before the MLP: gate, up
  MlpAct,   // act(gate) * up: down
  Final,    // the final normed hidden state: the LM head
  None,     // not a linear input (vectors, the embedding lookup)
};

struct TensorDecl {
  const char* name;  // Hugging Face name; "{L}" stands for the layer index in per-layer tensors
  Part part;
  Dim rows, cols;    // cols == Dim::None: a vector of `rows` values
  When when = When::Always;
};

// Whether the name has a "{L}" (a per-layer tensor).
bool is_layer_tensor(const TensorDecl& d);
int64_t dim_size(Dim d, const ModelConfig& c);
bool is_linear(Part p);
LinearInput linear_input(Part p);
const char* part_name(Part p);

enum class TensorRole {
  Linear,     // a projection inside a decoder layer
  Embedding,  // model.embed_tokens.weight, a lookup table (and the LM head when tied)
  LmHead,     // lm_head.weight, untied
  Vector,     // norm weights and biases: kept dense
};

// One concrete tensor of a model.
struct ModelTensor {
  std::string name;            // "model.layers.3.self_attn.q_proj.weight"
  std::vector<int64_t> shape;  // [rows, cols] or [n]
  Part part;
  int64_t layer;               // -1 for tensors outside the layers
  TensorRole role;
  int64_t numel() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
  }
};

// Every tensor of the table present for this config: the global tensors that come before the
// layers in the table, then each layer's tensors in table order, then the remaining global ones.
std::vector<ModelTensor> expand_tensors(const std::vector<TensorDecl>& table, const ModelConfig& c);

}  // namespace upg
