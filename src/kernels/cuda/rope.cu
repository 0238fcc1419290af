// Rotary position embedding, rotate-half convention (kernels/cpu/rope.h), in place on
// x (n_tokens x n_heads x head_dim): channels j < h = rotary_dim / 2 pair with j + h and become
// (x1 cos - x2 sin, x2 cos + x1 sin) with cos/sin rows (n_tokens x h) given; channels past rotary_dim
// pass through. One thread per (token, head, j).
#include "kernels/cuda/cuda_check.cuh"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/pdl.cuh"

namespace upg::cuda {

namespace {

__global__ void rope_kernel(float* x, int64_t total, int n_heads, int head_dim, int half, const float* __restrict__ cs,
                            const float* __restrict__ sn) {
  pdl_wait();
  pdl_launch_dependents();
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= total) return;
  const int j = static_cast<int>(i % half);
  const int64_t th = i / half;  // token * n_heads + head
  const int64_t tok = th / n_heads;
  float* v = x + th * head_dim;
  const float c = cs[tok * half + j], s = sn[tok * half + j];
  const float x1 = v[j], x2 = v[j + half];
  v[j] = x1 * c - x2 * s;
  v[j + half] = x2 * c + x1 * s;
}

}  // namespace

void rope(float* x, int64_t n_tokens, int64_t n_heads, int64_t head_dim, int64_t rotary_dim, const float* cos,
          const float* sin, void* stream) {
  UPG_CHECK(rotary_dim % 2 == 0 && rotary_dim <= head_dim, "rope: rotary_dim ", rotary_dim, " vs head_dim ", head_dim);
  const int64_t half = rotary_dim / 2, total = n_tokens * n_heads * half;
  if (total <= 0) return;
  launch_pdl("rope_kernel", rope_kernel, static_cast<unsigned>((total + 255) / 256), 256, 0, stream,
      x, total, static_cast<int>(n_heads), static_cast<int>(head_dim), static_cast<int>(half), cos, sin);
}

}  // namespace upg::cuda
