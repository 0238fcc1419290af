// Causal multi-head attention with grouped key/value heads (GQA) over a KV cache, fp32.
//
// KV cache layout (per layer): k, v: n_kv_heads x capacity x head_dim, i.e. key of kv head g at
// position p is k[(g * capacity + p) * head_dim ...]. Query head h uses kv head h / (n_heads / n_kv_heads)
// (transformers' repeat_kv). Token t of the batch sits at position pos0 + t and attends to
// positions [lo, pos0 + t] where lo = 0, or max(0, pos0 + t - window + 1) with a sliding window.
#pragma once
#include <cstdint>

namespace upg::kernels {

struct AttentionShape {
  int64_t n_heads, n_kv_heads, head_dim;
  int64_t capacity;  // positions the cache holds (stride between kv heads, in positions)
  int64_t window;    // 0 = full causal attention
  float scale;       // usually 1 / sqrt(head_dim)
};

// q: n_tokens x n_heads x head_dim. out: n_tokens x n_heads x head_dim (must not alias q).
// Keys/values for positions [0, pos0 + n_tokens) must already be in the cache.
// softmax(q.k * scale) . v, OpenMP over (token, head).
void attention(const AttentionShape& s, const float* q, int64_t n_tokens, int64_t pos0, const float* k_cache,
               const float* v_cache, float* out);

}  // namespace upg::kernels
