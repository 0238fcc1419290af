// Causal multi-head attention with grouped key/value heads (GQA) over the paged KV cache
// (kernels/kv_layout.h), fp32 arithmetic whatever the row type.
//
// Query head h uses kv head h / (n_heads / n_kv_heads) (transformers' repeat_kv). A token at
// position pos attends to positions [lo, pos], lo = 0, or max(0, pos - window + 1) with a sliding
// window: softmax(q.k * scale) . v, the scaled scores soft-capped first when softcap > 0.
#pragma once
#include <cstdint>

#include "kernels/kv_layout.h"

namespace upg::kernels {

struct AttentionShape {
  int64_t n_heads, n_kv_heads, head_dim;
  int64_t window;  // 0 = full causal attention
  float scale;     // usually 1 / sqrt(head_dim)
  float softcap = 0;  // > 0: scores become softcap * tanh(score / softcap) before the softmax (Gemma 2)
  // > 0: there are no value rows; the values are the first value_dim entries of the key rows (MLA's
  // latent cache) and out has value_dim entries.
  int64_t value_dim = 0;
};

// Writes x (head_dim values) as one row of type t.
void kv_store_row(KvType t, const float* x, int64_t head_dim, uint8_t* row);
// Reads one row of type t to fp32.
void kv_load_row(KvType t, const uint8_t* row, int64_t head_dim, float* out);

// One query head of one token: q (head_dim), out (head_dim). scores: scratch of at least
// pos - lo + 1 floats; tmp: scratch of head_dim floats. Keys and values of positions [lo, pos]
// must be in the cache.
void attention_head(const AttentionShape& s, const KvLayerView& kv, int64_t kv_head, const float* q, int64_t pos,
                    float* scores, float* tmp, float* out);

}  // namespace upg::kernels
