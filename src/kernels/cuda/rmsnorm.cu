// RMSNorm (kernels/cpu/norm.h): out = weight * (x * rsqrt(mean(x^2) + eps)), one CTA per row, the
// sum of squares reduced in fp32 (warp shuffles, then across warps); rows x dim, out may alias x.
// A decode step normalises one short row per entry, so the kernel is bound by load latency, not
// bandwidth: rows whose length is a multiple of 4 (and 16-byte aligned pointers) are read as float4
// by up to 1024 threads, 1-2 loads each for a 5120-wide row (ncu on an H100: the scalar 256-thread
// version took 19 us per row of 5120 with cold caches, 20 dependent load rounds).
#include <cstdint>

#include "kernels/cuda/cuda_check.cuh"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/pdl.cuh"

namespace upg::cuda {

namespace {

__device__ float block_sum(float v, float* part) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  if ((threadIdx.x & 31) == 0) part[threadIdx.x >> 5] = v;
  __syncthreads();
  if (threadIdx.x < 32) {
    float t = threadIdx.x < (blockDim.x >> 5) ? part[threadIdx.x] : 0.f;
    for (int o = 16; o > 0; o >>= 1) t += __shfl_xor_sync(0xffffffffu, t, o);
    if (threadIdx.x == 0) part[0] = t;
  }
  __syncthreads();
  return part[0];
}

__global__ void rmsnorm_kernel(const float* x, const float* __restrict__ w, int dim, float eps, float* out) {
  pdl_wait();
  pdl_launch_dependents();
  __shared__ float part[32];
  const float* xr = x + static_cast<int64_t>(blockIdx.x) * dim;
  float ss = 0.f;
  for (int i = threadIdx.x; i < dim; i += blockDim.x) ss = fmaf(xr[i], xr[i], ss);
  const float inv = rsqrtf(block_sum(ss, part) / static_cast<float>(dim) + eps);
  float* o = out + static_cast<int64_t>(blockIdx.x) * dim;
  for (int i = threadIdx.x; i < dim; i += blockDim.x) o[i] = w[i] * (xr[i] * inv);
}

// dim % 4 == 0, pointers 16-byte aligned. Each thread keeps its first float4 in registers.
__global__ void rmsnorm4_kernel(const float4* x, const float4* __restrict__ w, int dim4, float eps, float4* out) {
  pdl_wait();
  pdl_launch_dependents();
  __shared__ float part[32];
  const float4* xr = x + static_cast<int64_t>(blockIdx.x) * dim4;
  const int i0 = threadIdx.x;
  const float4 v0 = i0 < dim4 ? xr[i0] : make_float4(0.f, 0.f, 0.f, 0.f);
  float ss = v0.x * v0.x + v0.y * v0.y + v0.z * v0.z + v0.w * v0.w;
  for (int i = i0 + blockDim.x; i < dim4; i += blockDim.x) {
    const float4 v = xr[i];
    ss += v.x * v.x + v.y * v.y + v.z * v.z + v.w * v.w;
  }
  const float inv = rsqrtf(block_sum(ss, part) / static_cast<float>(4 * dim4) + eps);
  float4* o = out + static_cast<int64_t>(blockIdx.x) * dim4;
  for (int i = i0; i < dim4; i += blockDim.x) {
    const float4 v = i == i0 ? v0 : xr[i], g = w[i];
    o[i] = make_float4(g.x * (v.x * inv), g.y * (v.y * inv), g.z * (v.z * inv), g.w * (v.w * inv));
  }
}

}  // namespace

void rmsnorm(const float* x, const float* weight, int64_t rows, int64_t dim, float eps, float* out, void* stream) {
  if (rows <= 0) return;
  const bool aligned = ((reinterpret_cast<uintptr_t>(x) | reinterpret_cast<uintptr_t>(weight) |
                         reinterpret_cast<uintptr_t>(out)) & 15u) == 0;
  if (dim % 4 == 0 && aligned) {
    const int dim4 = static_cast<int>(dim / 4);
    const int threads = dim4 >= 1024 ? 1024 : ((dim4 + 31) / 32) * 32;
    launch_pdl("rmsnorm4_kernel", rmsnorm4_kernel, static_cast<unsigned>(rows), threads, 0, stream,
        reinterpret_cast<const float4*>(x), reinterpret_cast<const float4*>(weight), dim4, eps,
        reinterpret_cast<float4*>(out));
    return;
  }
  launch_pdl("rmsnorm_kernel", rmsnorm_kernel, static_cast<unsigned>(rows), 256, 0, stream, x, weight, static_cast<int>(dim), eps, out);
}

}  // namespace upg::cuda
