// Elementwise pieces of the decoder: SwiGLU gating and softmax.
#pragma once
#include <cstdint>

namespace upg::kernels {

// out[i] = up[i] * silu(gate[i]), silu(x) = x / (1 + exp(-x)). out may alias gate or up.
void silu_mul(const float* gate, const float* up, float* out, int64_t n);

// In-place softmax over n values (max-subtracted; sum accumulated in double).
void softmax(float* x, int64_t n);

}  // namespace upg::kernels
