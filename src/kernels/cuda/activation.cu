// Gated activations of the MLP (kernels/cpu/activation.h), elementwise, fp32:
//   silu_mul:      out = up * gate / (1 + exp(-gate))
//   gelu_tanh_mul: out = up * 0.5 gate (1 + tanh(sqrt(2/pi) (gate + 0.044715 gate^3)))
//   gated_rows:    any of the three (gelu: erf) over rows [gate | up], as the engine's MLP holds them
#include <algorithm>

#include "kernels/cuda/cuda_check.cuh"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/pdl.cuh"

namespace upg::cuda {

namespace {

template <bool kGelu>
__global__ void gated_kernel(const float* gate, const float* up, float* out, int64_t n) {
  pdl_wait();
  pdl_launch_dependents();
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
  launch_pdl("gated_kernel", gated_kernel<kGelu>, static_cast<unsigned>(blocks), 256, 0, stream, gate, up, out, n);
}

}  // namespace

void silu_mul(const float* gate, const float* up, float* out, int64_t n, void* stream) {
  launch<false>(gate, up, out, n, stream);
}
void gelu_tanh_mul(const float* gate, const float* up, float* out, int64_t n, void* stream) {
  launch<true>(gate, up, out, n, stream);
}

namespace {

template <Activation kAct>
__global__ void gated_rows_kernel(const float* gate_up, int64_t n, int64_t width, float* out) {
  pdl_wait();
  pdl_launch_dependents();
  const int64_t total = n * width;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t t = i / width, c = i - t * width;
    const float g = gate_up[t * 2 * width + c], u = gate_up[t * 2 * width + width + c];
    float a;
    if constexpr (kAct == Activation::Silu) a = g / (1.0f + expf(-g));
    else if constexpr (kAct == Activation::GeluTanh)
      a = 0.5f * g * (1.0f + tanhf(0.7978845608028654f * (g + 0.044715f * g * g * g)));
    else a = 0.5f * g * (1.0f + erff(g * 0.7071067811865476f));
    out[i] = u * a;
  }
}

}  // namespace

void gated_rows(Activation act, const float* gate_up, int64_t n, int64_t width, float* out, void* stream) {
  const int64_t total = n * width;
  if (total <= 0) return;
  const unsigned blocks = static_cast<unsigned>(std::min<int64_t>((total + 255) / 256, 65535));
  switch (act) {
    case Activation::Silu:
      launch_pdl("gated_rows_kernel", gated_rows_kernel<Activation::Silu>, blocks, 256, 0, stream, gate_up, n, width, out);
      break;
    case Activation::GeluTanh:
      launch_pdl("gated_rows_kernel", gated_rows_kernel<Activation::GeluTanh>, blocks, 256, 0, stream, gate_up, n, width, out);
      break;
    case Activation::Gelu:
      launch_pdl("gated_rows_kernel", gated_rows_kernel<Activation::Gelu>, blocks, 256, 0, stream, gate_up, n, width, out);
      break;
  }
}

}  // namespace upg::cuda
