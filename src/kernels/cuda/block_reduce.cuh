// Block-wide reductions for the CUDA kernels (rmsnorm.cu, logit_select.cu): every thread of the
// block gets op over all threads' values. A butterfly over each warp's lanes, then the same
// butterfly over the warps' results (lanes past the block's last warp holding `identity`), so the
// order of the operations depends only on the block size: two kernels launched with the same
// block size reduce the same values to the same bits.
#pragma once

namespace upg::cuda {

struct MaxOp {
  __device__ float operator()(float a, float b) const { return fmaxf(a, b); }
};
struct MaxU64Op {
  __device__ unsigned long long operator()(unsigned long long a, unsigned long long b) const { return a > b ? a : b; }
};
struct SumOp {
  template <class T>
  __device__ T operator()(T a, T b) const { return a + b; }
};

// scratch: 32 values of shared memory, free for reuse once the call returns to every thread.
template <class T, class Op>
__device__ __forceinline__ T block_reduce(T v, Op op, T identity, T* scratch) {
  for (int o = 16; o; o >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
  __syncthreads();  // scratch may still be read from a previous call
  if ((threadIdx.x & 31) == 0) scratch[threadIdx.x >> 5] = v;
  __syncthreads();
  const int lane = threadIdx.x & 31;
  v = lane < static_cast<int>((blockDim.x + 31) >> 5) ? scratch[lane] : identity;
  for (int o = 16; o; o >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

}  // namespace upg::cuda
