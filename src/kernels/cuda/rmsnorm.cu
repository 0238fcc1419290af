// RMSNorm (kernels/cpu/norm.h): out = weight * (x * rsqrt(mean(x^2) + eps)), one CTA per row, the
// sum of squares reduced in fp32 (warp shuffles, then across warps); rows x dim, out may alias x.
// A decode step normalises one short row per entry, so the kernel is bound by load latency, not
// bandwidth: rows whose length is a multiple of 4 (and 16-byte aligned pointers) are read as float4
// by up to 1024 threads, 1-2 loads each for a 5120-wide row (ncu on an H100: the scalar 256-thread
// version took 19 us per row of 5120 with cold caches, 20 dependent load rounds).
#include <cmath>
#include <cstdint>

#include "kernels/cuda/block_reduce.cuh"
#include "kernels/cuda/cuda_check.cuh"
#include "kernels/cuda/hadamard.cuh"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/pdl.cuh"

namespace upg::cuda {

namespace {

__global__ void rmsnorm_kernel(const float* x, const float* __restrict__ w, int dim, float eps, float* out) {
  pdl_wait();
  pdl_launch_dependents();
  __shared__ float part[32];
  const float* xr = x + static_cast<int64_t>(blockIdx.x) * dim;
  float ss = 0.f;
  for (int i = threadIdx.x; i < dim; i += blockDim.x) ss = fmaf(xr[i], xr[i], ss);
  const float inv = rsqrtf(block_reduce(ss, SumOp{}, 0.f, part) / static_cast<float>(dim) + eps);
  float* o = out + static_cast<int64_t>(blockIdx.x) * dim;
  for (int i = threadIdx.x; i < dim; i += blockDim.x) o[i] = w[i] * (xr[i] * inv);
}

// 1 / rms of a row of dim4 float4 (+ eps), the sum of squares per thread over its float4s in order,
// then block_reduce: both float4 kernels call it, so they compute the same bits. v0: the thread's
// first float4 (zeros past the row).
__device__ __forceinline__ float inv_rms4(const float4* xr, int dim4, float eps, float* part, float4& v0) {
  const int i0 = threadIdx.x;
  v0 = i0 < dim4 ? xr[i0] : make_float4(0.f, 0.f, 0.f, 0.f);
  float ss = v0.x * v0.x + v0.y * v0.y + v0.z * v0.z + v0.w * v0.w;
  for (int i = i0 + blockDim.x; i < dim4; i += blockDim.x) {
    const float4 v = xr[i];
    ss += v.x * v.x + v.y * v.y + v.z * v.z + v.w * v.w;
  }
  return rsqrtf(block_reduce(ss, SumOp{}, 0.f, part) / static_cast<float>(4 * dim4) + eps);
}

// dim % 4 == 0, pointers 16-byte aligned. Each thread keeps its first float4 in registers.
__global__ void rmsnorm4_kernel(const float4* x, const float4* __restrict__ w, int dim4, float eps, float4* out) {
  pdl_wait();
  pdl_launch_dependents();
  __shared__ float part[32];
  const float4* xr = x + static_cast<int64_t>(blockIdx.x) * dim4;
  const int i0 = threadIdx.x;
  float4 v0;
  const float inv = inv_rms4(xr, dim4, eps, part, v0);
  float4* o = out + static_cast<int64_t>(blockIdx.x) * dim4;
  for (int i = i0; i < dim4; i += blockDim.x) {
    const float4 v = i == i0 ? v0 : xr[i], g = w[i];
    o[i] = make_float4(g.x * (v.x * inv), g.y * (v.y * inv), g.z * (v.z * inv), g.w * (v.w * inv));
  }
}

// rmsnorm4_kernel's output for columns [b0, b0 + block) of one row (the same threads and sums, so
// the same bits), written to out and, sign-flipped and Walsh-Hadamard transformed (hadamard.cu),
// to xrot: the rotated input of the matmul that reads out next. One CTA per (block of columns,
// row); each reads the whole row for its sum of squares (from L2). out must not alias x.
__global__ void rmsnorm4_rotate_kernel(const float4* x, const float4* __restrict__ w, int dim4, float eps, float4* out,
                                       const float* __restrict__ signs, int block, float norm, float* xrot) {
  pdl_wait();
  pdl_launch_dependents();
  __shared__ float part[32];
  extern __shared__ float sh[];
  const int64_t row = blockIdx.y;
  const float4* xr = x + row * dim4;
  float4 v0;
  const float inv = inv_rms4(xr, dim4, eps, part, v0);
  const int c4 = blockIdx.x * (block / 4);
  for (int i = threadIdx.x; i < block / 4; i += blockDim.x) {
    const float4 v = xr[c4 + i], g = w[c4 + i];
    const float4 o = make_float4(g.x * (v.x * inv), g.y * (v.y * inv), g.z * (v.z * inv), g.w * (v.w * inv));
    out[row * dim4 + c4 + i] = o;
    const float* sg = signs + 4 * (c4 + i);
    sh[4 * i] = o.x * sg[0], sh[4 * i + 1] = o.y * sg[1], sh[4 * i + 2] = o.z * sg[2], sh[4 * i + 3] = o.w * sg[3];
  }
  __syncthreads();
  fwht_shared(sh, block);
  float* r = xrot + row * 4 * dim4 + 4 * c4;
  for (int i = threadIdx.x; i < block; i += blockDim.x) r[i] = sh[i] * norm;
}

bool float4_rows(const float* x, const float* weight, const float* out, int64_t dim) {
  return dim % 4 == 0 && ((reinterpret_cast<uintptr_t>(x) | reinterpret_cast<uintptr_t>(weight) |
                           reinterpret_cast<uintptr_t>(out)) & 15u) == 0;
}
int float4_threads(int64_t dim4) { return dim4 >= 1024 ? 1024 : static_cast<int>((dim4 + 31) / 32) * 32; }

}  // namespace

void rmsnorm(const float* x, const float* weight, int64_t rows, int64_t dim, float eps, float* out, void* stream) {
  if (rows <= 0) return;
  if (float4_rows(x, weight, out, dim)) {
    const int dim4 = static_cast<int>(dim / 4);
    const int threads = float4_threads(dim4);
    launch_pdl("rmsnorm4_kernel", rmsnorm4_kernel, static_cast<unsigned>(rows), threads, 0, stream,
        reinterpret_cast<const float4*>(x), reinterpret_cast<const float4*>(weight), dim4, eps,
        reinterpret_cast<float4*>(out));
    return;
  }
  launch_pdl("rmsnorm_kernel", rmsnorm_kernel, static_cast<unsigned>(rows), 256, 0, stream, x, weight, static_cast<int>(dim), eps, out);
}

bool rmsnorm_rotate(const float* x, const float* weight, int64_t rows, int64_t dim, float eps, float* out,
                    const float* signs, int64_t block, float* xrot, void* stream) {
  if (rows <= 0) return true;
  if (!float4_rows(x, weight, out, dim) || x == out || block < 4 || !rotation_block_fits(block, dim)) return false;
  const int64_t dim4 = dim / 4;
  launch_pdl("rmsnorm4_rotate_kernel", rmsnorm4_rotate_kernel,
      dim3(static_cast<unsigned>(dim / block), static_cast<unsigned>(rows)), float4_threads(dim4),
      block * sizeof(float), stream, reinterpret_cast<const float4*>(x), reinterpret_cast<const float4*>(weight),
      static_cast<int>(dim4), eps, reinterpret_cast<float4*>(out), signs, static_cast<int>(block),
      1.0f / std::sqrt(static_cast<float>(block)), xrot);
  return true;
}

}  // namespace upg::cuda
