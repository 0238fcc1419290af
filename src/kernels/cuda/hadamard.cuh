// The Walsh-Hadamard butterflies of hadamard.cu on a block of `block` floats in shared memory, for
// the kernels that rotate a matmul's input as they make it (rmsnorm.cu, activation.cu): the same
// additions in the same order as the CPU's fwht_blocks, whatever the number of threads.
#pragma once

namespace upg::cuda {

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
