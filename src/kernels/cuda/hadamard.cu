// Randomized Hadamard rotation of activations, x R = FWHT_B(s * x) (codecs/compose.h): the codecs'
// "rotate" option stores W R, so y = x W^T = (x R)(W R)^T costs one pass over x, not over W.
// One CTA per (row of x, block of B columns): the block is loaded sign-flipped into shared memory,
// transformed with log2(B) butterfly stages (the same additions, in the same order, as the CPU's
// fwht_blocks) and scaled by 1 / sqrt(B). B <= 4096 (16 KB of shared memory).
#include <algorithm>
#include <cmath>

#include "kernels/cuda/cuda_check.cuh"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/hadamard.cuh"
#include "kernels/cuda/pdl.cuh"

namespace upg::cuda {

namespace {

__global__ void hadamard_kernel(const float* __restrict__ x, float* out, int cols, const float* __restrict__ signs,
                                int block, float norm) {
  pdl_wait();
  pdl_launch_dependents();
  extern __shared__ float sh[];
  const int64_t row = blockIdx.y;
  const int b0 = blockIdx.x * block;
  const float* xr = x + row * cols + b0;
  for (int i = threadIdx.x; i < block; i += blockDim.x) sh[i] = xr[i] * signs[b0 + i];
  __syncthreads();
  fwht_shared(sh, block);
  float* o = out + row * cols + b0;
  for (int i = threadIdx.x; i < block; i += blockDim.x) o[i] = sh[i] * norm;
}

}  // namespace

void hadamard_rotate(const float* x, float* out, int64_t n, int64_t cols, const float* signs, int64_t block,
                     void* stream) {
  UPG_CHECK(rotation_block_fits(block, cols),
            "hadamard_rotate: block ", block, " must be a power of two <= 4096 dividing cols ", cols);
  if (n <= 0) return;
  const int threads = static_cast<int>(std::min<int64_t>(512, std::max<int64_t>(32, block / 2)));
  const dim3 grid(static_cast<unsigned>(cols / block), static_cast<unsigned>(n));
  launch_pdl("hadamard_kernel", hadamard_kernel, grid, threads, block * sizeof(float), stream,
      x, out, static_cast<int>(cols), signs, static_cast<int>(block), 1.0f / std::sqrt(static_cast<float>(block)));
}

}  // namespace upg::cuda
