// Elementwise pieces of the decoder: gated activations (SwiGLU, GeGLU), soft-capping and softmax.
#pragma once
#include <cstdint>

namespace upg::kernels {

// out[i] = up[i] * silu(gate[i]), silu(x) = x / (1 + exp(-x)). out may alias gate or up.
void silu_mul(const float* gate, const float* up, float* out, int64_t n);
// out[i] = up[i] * gelu_tanh(gate[i]), the tanh approximation (transformers' gelu_pytorch_tanh):
// 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
void gelu_tanh_mul(const float* gate, const float* up, float* out, int64_t n);
// out[i] = up[i] * gelu(gate[i]), exact: 0.5 x (1 + erf(x / sqrt(2))).
void gelu_mul(const float* gate, const float* up, float* out, int64_t n);
// x[i] = cap * tanh(x[i] / cap) (logit soft-capping).
void softcap(float* x, int64_t n, float cap);

// In-place softmax over n values (max-subtracted; sum accumulated in double).
void softmax(float* x, int64_t n);

}  // namespace upg::kernels
