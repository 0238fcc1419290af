// The Walsh-Hadamard butterflies of hadamard.cu on a block of `block` floats in shared memory, for
// the kernels that rotate a matmul's input as they make it (rmsnorm.cu, activation.cu): the same
// additions in the same order as the CPU's fwht_blocks, whatever the number of threads; and the
// one check of a rotation block every launcher and the upload make.
#pragma once

#include <cstdint>

namespace upg::cuda {

// Whether the kernels can rotate rows of `cols` values in blocks of `block`: a power of two up to
// 4,096 (a block is transformed in shared memory) dividing cols.
inline bool rotation_block_fits(int64_t block, int64_t cols) {
  return block >= 1 && block <= 4096 && (block & (block - 1)) == 0 && cols % block == 0;
}

// sh: block floats (a power of two), already sign-flipped; every thread of the CTA calls it. Ends
// with a barrier, so sh may be read right after.
__device__ __forceinline__ void fwht_shared(float* sh, int block) {
  for (int h = 1; h < block; h <<= 1) {
    for (int p = threadIdx.x; p < block / 2; p += blockDim.x) {
      const int i = (p / h) * 2 * h + (p % h);
      const float a = sh[i], b = sh[i + h];
      sh[i] = a + b;
      sh[i + h] = a - b;
    }
    __syncthreads();
  }
}

}  // namespace upg::cuda
