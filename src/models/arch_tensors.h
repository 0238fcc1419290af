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
  PostAttnNorm, // hidden: norm of the attention output, before the residual add (Gemma 2)
  PostMlpNorm,  // hidden: norm of the MLP output, before the residual add (Gemma 2)
  Q, K, V,      // split attention input projections
  QKV,          // fused [q | k | v]
  QBias, KBias, VBias, QKVBias,
  O, OBias,     // attention output projection
  Gate, Up,     // split MLP input projections
  GateUp,       // fused [gate | up]
  GateBias, UpBias, GateUpBias,
  Down, DownBias,
  // Mixture-of-experts MLP (models/arch_tensors.h: "{E}" in the name is the expert index).
  Router,            // experts x hidden: the router's logits (kept dense)
  ExpertGate, ExpertUp, ExpertDown,  // one routed expert's gated MLP (moe_intermediate_size)
  SharedGate, SharedUp, SharedDown,  // the shared expert, run on every token (Qwen2-MoE, DeepSeek)
  SharedExpertGate,  // 1 x hidden: sigmoid gate on the shared expert's output (Qwen2-MoE; kept dense)
  RouterBias,        // experts: DeepSeek's correction bias added to the scores for the choice only
  // Multi-head latent attention (ModelConfig::mla).
  MlaQ,              // heads*(nope+rope) x hidden, when there is no q LoRA
  MlaQA, MlaQANorm, MlaQB,   // q LoRA: q_lora x hidden, its norm, heads*(nope+rope) x q_lora
  MlaKvA, MlaKvANorm, MlaKvB,  // (kv_lora+rope) x hidden, the latent's norm, heads*(nope+v) x kv_lora
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
  Experts,      // moe.num_experts
  MoeInter,     // moe.intermediate_size (per routed expert)
  SharedInter,  // moe.shared_intermediate_size
  One,          // 1
  MlaQOut,      // heads * (qk_nope_head_dim + qk_rope_head_dim)
  QLora,        // q_lora_rank
  KvLora,       // kv_lora_rank
  KvLoraRope,   // kv_lora_rank + qk_rope_head_dim
  MlaKvBOut,    // heads * (qk_nope_head_dim + v_head_dim)
  MlaOIn,       // heads * v_head_dim
};

// When a tensor is present.
enum class When {
  Always,
  AttentionBias,  // config.attention_bias (q, k, v biases)
  OProjBias,      // config.o_proj_bias
  MlpBias,        // config.mlp_bias
  Untied,         // !config.tie_word_embeddings
  DenseMlpLayer,  // the layer has a dense MLP (not a mixture of experts)
  MoeLayer,       // the layer is a mixture of experts
  SharedExpert,   // the layer is a mixture of experts with a shared expert
  QLora,          // MLA with a q LoRA (q_lora_rank set)
  NoQLora,        // MLA without one
};

// Which activation feeds a linear part (what the calibration observer reports for it).
enum class LinearInput {
  AttnIn,   // the normed hidden state before attention: q, k, v
  AttnOut,  // the attention output (heads concatenated): o
  MlpIn,    // the normed hidden state before the MLP: gate, up
  MlpAct,   // act(gate) * up: down (of the dense MLP or the shared expert; a routed expert's own
            // inputs are the rows routed to it, reported under the expert's tensor names)
  Final,    // the final normed hidden state: the LM head
  QLatent,  // MLA: the normed q LoRA latent: q_b
  KvLatent, // MLA: the normed kv latent c: kv_b
  None,     // not a linear input (vectors, the embedding lookup)
};

// How a tensor of the table is found in the fused-experts layout current transformers writes
// (TensorDecl::fused): the same 2-D tensor under another name, or one expert's slice of a 3-D
// [experts, rows', cols] tensor: all its rows, or the first / second half of them (gate_up_proj
// holds [gate; up] per expert).
enum class FusedSlice { Rename, Expert, ExpertFirstHalf, ExpertSecondHalf };

struct TensorDecl {
  // Hugging Face name; "{L}" stands for the layer index in per-layer tensors, "{E}" for the expert
  // index in per-expert tensors (expanded for every expert of every MoE layer).
  const char* name;
  Part part;
  Dim rows, cols;    // cols == Dim::None: a vector of `rows` values
  When when = When::Always;
  const char* fused = nullptr;  // the name in the fused-experts layout ("{L}" as above), if any
  FusedSlice fused_slice = FusedSlice::Rename;
};

// Whether the name has a "{L}" (a per-layer tensor) / an "{E}" (a per-expert tensor).
bool is_layer_tensor(const TensorDecl& d);
bool is_expert_tensor(const TensorDecl& d);
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
  int64_t expert = -1;         // the routed expert, for per-expert tensors
  std::string fused_name;      // TensorDecl::fused expanded ("" if none)
  FusedSlice fused_slice = FusedSlice::Rename;
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
