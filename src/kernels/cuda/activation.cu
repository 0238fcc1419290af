// Gated activations of the MLP (kernels/cpu/activation.h), elementwise, fp32:
//   silu_mul:      out = up * gate / (1 + exp(-gate))
//   gelu_tanh_mul: out = up * 0.5 gate (1 + tanh(sqrt(2/pi) (gate + 0.044715 gate^3)))
//   gated_rows:    any of the three (gelu: erf) over rows [gate | up], as the engine's MLP holds them
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "kernels/cuda/cuda_check.cuh"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/hadamard.cuh"
#include "kernels/cuda/pdl.cuh"

namespace upg::cuda {

namespace {

template <Activation kAct>
__device__ __forceinline__ float gated_value(float g, float u) {
  float a;
  if constexpr (kAct == Activation::Silu) a = g / (1.0f + expf(-g));
  else if constexpr (kAct == Activation::GeluTanh)
    a = 0.5f * g * (1.0f + tanhf(0.7978845608028654f * (g + 0.044715f * g * g * g)));
  else a = 0.5f * g * (1.0f + erff(g * 0.7071067811865476f));
  return u * a;
}

template <bool kGelu>
__global__ void gated_kernel(const float* gate, const float* up, float* out, int64_t n) {
  pdl_wait();
  pdl_launch_dependents();
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    out[i] = gated_value<kGelu ? Activation::GeluTanh : Activation::Silu>(gate[i], up[i]);
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
    out[i] = gated_value<kAct>(gate_up[t * 2 * width + c], gate_up[t * 2 * width + width + c]);
  }
}

// gated_rows_kernel's values of columns [b0, b0 + block) of one row, written to out and,
// sign-flipped and Walsh-Hadamard transformed (hadamard.cu), to xrot: the rotated input of the
// matmul that reads out next. One CTA per (block of columns, row). out must not overlap gate_up.
template <Activation kAct>
__global__ void gated_rows_rotate_kernel(const float* __restrict__ gate_up, int64_t width, float* out,
                                         const float* __restrict__ signs, int block, float norm, float* xrot) {
  pdl_wait();
  pdl_launch_dependents();
  extern __shared__ float sh[];
  const int64_t t = blockIdx.y, b0 = static_cast<int64_t>(blockIdx.x) * block;
  const float* gate = gate_up + t * 2 * width + b0;
  for (int i = threadIdx.x; i < block; i += blockDim.x) {
    const float v = gated_value<kAct>(gate[i], gate[width + i]);
    out[t * width + b0 + i] = v;
    sh[i] = v * signs[b0 + i];
  }
  __syncthreads();
  fwht_shared(sh, block);
  float* r = xrot + t * width + b0;
  for (int i = threadIdx.x; i < block; i += blockDim.x) r[i] = sh[i] * norm;
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

bool gated_rows_rotate(Activation act, const float* gate_up, int64_t n, int64_t width, float* out, const float* signs,
                       int64_t block, float* xrot, void* stream) {
  if (n <= 0) return true;
  const auto lo = reinterpret_cast<uintptr_t>(gate_up), hi = lo + static_cast<uintptr_t>(n * 2 * width) * sizeof(float);
  const auto o = reinterpret_cast<uintptr_t>(out), o_end = o + static_cast<uintptr_t>(n * width) * sizeof(float);
  if ((o < hi && lo < o_end) || !rotation_block_fits(block, width)) return false;
  const dim3 grid(static_cast<unsigned>(width / block), static_cast<unsigned>(n));
  const int threads = static_cast<int>(std::min<int64_t>(512, std::max<int64_t>(32, block / 2)));
  const size_t smem = block * sizeof(float);
  const float norm = 1.0f / std::sqrt(static_cast<float>(block));
  switch (act) {
    case Activation::Silu:
      launch_pdl("gated_rows_rotate_kernel", gated_rows_rotate_kernel<Activation::Silu>, grid, threads, smem, stream,
                 gate_up, width, out, signs, static_cast<int>(block), norm, xrot);
      break;
    case Activation::GeluTanh:
      launch_pdl("gated_rows_rotate_kernel", gated_rows_rotate_kernel<Activation::GeluTanh>, grid, threads, smem,
                 stream, gate_up, width, out, signs, static_cast<int>(block), norm, xrot);
      break;
    case Activation::Gelu:
      launch_pdl("gated_rows_rotate_kernel", gated_rows_rotate_kernel<Activation::Gelu>, grid, threads, smem, stream,
                 gate_up, width, out, signs, static_cast<int>(block), norm, xrot);
      break;
  }
  return true;
}

}  // namespace upg::cuda
