// Gated activations of the MLP (kernels/cpu/activation.h), elementwise, fp32:
//   silu_mul:      out = up * gate / (1 + exp(-gate))
//   gelu_tanh_mul: out = up * 0.5 gate (1 + tanh(sqrt(2/pi) (gate + 0.044715 gate^3)))
#include <algorithm>

#include "kernels/cuda/cuda_check.cuh"
#include "kernels/cuda/cuda_ops.h"

namespace upg::cuda {

namespace {

template <bool kGelu>
__global__ void gated_kernel(const float* gate, const float* up, float* out, int64_t n) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float g = gate[i];
    float a;
    if constexpr (kGelu) a = 0.5f * g * (1.0f + tanhf(0.7978845608028654f * (g + 0.044715f * g * g * g)));
    else a = g / (1.0f + expf(-g));
    out[i] = up[i] * a;
  }
}

template <bool kGelu>
void launch(const float* gate, const float* up, float* out, int64_t n, void* stream) {
  if (n <= 0) return;
  const int64_t blocks = std::min<int64_t>((n + 255) / 256, 65535);
  gated_kernel<kGelu><<<static_cast<unsigned>(blocks), 256, 0, as_stream(stream)>>>(gate, up, out, n);
  UPG_CUDA_LAUNCHED("gated_kernel");
}

}  // namespace

void silu_mul(const float* gate, const float* up, float* out, int64_t n, void* stream) {
  launch<false>(gate, up, out, n, stream);
}
void gelu_tanh_mul(const float* gate, const float* up, float* out, int64_t n, void* stream) {
  launch<true>(gate, up, out, n, stream);
}

}  // namespace upg::cuda
