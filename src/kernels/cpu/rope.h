// Rotary position embedding, transformers' non-interleaved ("rotate_half") convention:
// the first rotary_dim channels of each head are split into halves x1 = x[0:h], x2 = x[h:2h]
// (h = rotary_dim / 2) and become (x1 cos - x2 sin, x2 cos + x1 sin); channels beyond
// rotary_dim pass through (partial rotary, Phi-4-mini). cos/sin include the rope attention scaling.
#pragma once
#include <cstdint>

namespace upg::kernels {

// cos, sin: n x half, for positions pos0 .. pos0 + n - 1. As transformers: angle = fp32(inv_freq *
// position), then cos(angle) * attention_scaling in fp32.
void rope_cos_sin(const float* inv_freq, int64_t half, float attention_scaling, int64_t pos0, int64_t n,
                  float* cos, float* sin);

// x: n_tokens x n_heads x head_dim, rotated in place with the cos/sin rows of each token.
void apply_rope(float* x, int64_t n_tokens, int64_t n_heads, int64_t head_dim, int64_t rotary_dim,
                const float* cos, const float* sin);

}  // namespace upg::kernels
