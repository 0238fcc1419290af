// RMSNorm (kernels/cpu/norm.h): out = weight * (x * rsqrt(mean(x^2) + eps)), one CTA per row, the
// sum of squares reduced in fp32 (warp shuffles, then across warps); rows x dim, out may alias x.
#include "kernels/cuda/cuda_check.cuh"
#include "kernels/cuda/cuda_ops.h"

namespace upg::cuda {

namespace {

__global__ void rmsnorm_kernel(const float* x, const float* __restrict__ w, int dim, float eps, float* out) {
  __shared__ float part[32];
  const float* xr = x + static_cast<int64_t>(blockIdx.x) * dim;
  float ss = 0.f;
  for (int i = threadIdx.x; i < dim; i += blockDim.x) ss = fmaf(xr[i], xr[i], ss);
  for (int o = 16; o > 0; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o);
  if ((threadIdx.x & 31) == 0) part[threadIdx.x >> 5] = ss;
  __syncthreads();
  if (threadIdx.x < 32) {
    float v = threadIdx.x < (blockDim.x >> 5) ? part[threadIdx.x] : 0.f;
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    if (threadIdx.x == 0) part[0] = v;
  }
  __syncthreads();
  const float inv = rsqrtf(part[0] / static_cast<float>(dim) + eps);
  float* o = out + static_cast<int64_t>(blockIdx.x) * dim;
  for (int i = threadIdx.x; i < dim; i += blockDim.x) o[i] = w[i] * (xr[i] * inv);
}

}  // namespace

void rmsnorm(const float* x, const float* weight, int64_t rows, int64_t dim, float eps, float* out, void* stream) {
  if (rows <= 0) return;
  rmsnorm_kernel<<<static_cast<unsigned>(rows), 256, 0, as_stream(stream)>>>(x, weight, static_cast<int>(dim), eps, out);
  UPG_CUDA_LAUNCHED("rmsnorm_kernel");
}

}  // namespace upg::cuda
