// Multi-head latent attention (DeepSeek V2/V3) on the GPU, in the absorbed form the engine writes
// (runtime/engine_mla.cpp): per-head products with the up-projections, the rope part's pairs
// deinterleaved, and attention over the cache's latent rows, whose first value_dim columns are the
// values. Same maths as the CPU backend (kernels/cpu/attention.h, AttentionShape::value_dim).
//
// latent_attention: one CTA of 4 warps per (entry, head); warp w takes every 4th position of [lo, pos];
// for each, the lanes' partial dot products of the bf16 row with q (in shared memory) are summed with
// shuffles, and each lane keeps an online softmax (max, sum) and its columns lane, lane + 32, ... of the
// weighted value sum; the warps merge in shared memory. Positions are not split over CTAs: a decode
// step has n_heads CTAs per entry (128 for DeepSeek V3).
#include <cuda_bf16.h>

#include <cmath>

#include "kernels/cuda/attention_paged.cuh"
#include "kernels/cuda/cuda_check.cuh"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/pdl.cuh"

namespace upg::cuda {

namespace {

constexpr int kWarps = 4, kMaxValueCols = 16;  // value_dim <= 32 * 16 = 512 (DeepSeek V3's kv_lora_rank)

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

struct LatentArgs {
  PagedKv kv;
  const float* q;
  const int32_t* pos;
  float* out;
  int n_heads, row, value_dim;
  int64_t window;
  float scale, softcap;
};

template <int VC>  // value columns per lane: ceil(value_dim / 32)
__global__ void __launch_bounds__(kWarps * 32) latent_attention_kernel(LatentArgs a) {
  pdl_wait();
  pdl_launch_dependents();
  extern __shared__ float smem[];  // q (row), then per warp: max, sum, value_dim sums
  const int entry = blockIdx.x / a.n_heads;  // (blockIdx.x % n_heads: the head, whose row q is)
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  float* q = smem;
  const float* qg = a.q + static_cast<int64_t>(blockIdx.x) * a.row;
  for (int i = threadIdx.x; i < a.row; i += blockDim.x) q[i] = qg[i];
  __syncthreads();
  const int64_t pos = a.pos[entry];
  const int64_t lo = a.window > 0 ? max(int64_t{0}, pos - a.window + 1) : 0;
  float m = -INFINITY, l = 0.f, acc[VC];
#pragma unroll
  for (int c = 0; c < VC; ++c) acc[c] = 0.f;
  for (int64_t p = lo + warp; p <= pos; p += kWarps) {
    const __nv_bfloat16* r = reinterpret_cast<const __nv_bfloat16*>(kv_row(a.kv, entry, 0, 0, p));
    float s = 0.f;
    for (int i = lane; i < a.row; i += 32) s = fmaf(q[i], __bfloat162float(r[i]), s);
    s = warp_sum(s) * a.scale;
    if (a.softcap > 0) s = a.softcap * tanhf(s / a.softcap);
    const float mn = fmaxf(m, s), corr = __expf(m - mn), w = __expf(s - mn);
    l = l * corr + w;
#pragma unroll
    for (int c = 0; c < VC; ++c) {
      const int i = lane + 32 * c;
      const float v = i < a.value_dim ? __bfloat162float(r[i]) : 0.f;
      acc[c] = fmaf(w, v, acc[c] * corr);
    }
    m = mn;
  }
  // Merge the warps: warp w's (m, l) and sums at smem[row + w * (2 + value_dim)].
  float* mine = smem + a.row + warp * (2 + a.value_dim);
  if (lane == 0) mine[0] = m, mine[1] = l;
#pragma unroll
  for (int c = 0; c < VC; ++c) {
    const int i = lane + 32 * c;
    if (i < a.value_dim) mine[2 + i] = acc[c];
  }
  __syncthreads();
  float mt = -INFINITY;
  for (int w = 0; w < kWarps; ++w) mt = fmaxf(mt, smem[a.row + w * (2 + a.value_dim)]);
  float lt = 0.f;
  for (int w = 0; w < kWarps; ++w) {
    const float* o = smem + a.row + w * (2 + a.value_dim);
    if (o[0] > -INFINITY) lt += o[1] * __expf(o[0] - mt);
  }
  float* outp = a.out + static_cast<int64_t>(blockIdx.x) * a.value_dim;
  for (int i = threadIdx.x; i < a.value_dim; i += blockDim.x) {
    float s = 0.f;
    for (int w = 0; w < kWarps; ++w) {
      const float* o = smem + a.row + w * (2 + a.value_dim);
      if (o[0] > -INFINITY) s += o[2 + i] * __expf(o[0] - mt);
    }
    outp[i] = s / lt;
  }
}

// transpose: y (cols) = W_h^T x (rows values); else y (rows) = W_h x (cols values). One CTA per
// (token, head); W_h = w + h * rows * cols, row-major.
__global__ void __launch_bounds__(256) head_products_kernel(const float* __restrict__ w, bool transpose, int heads,
                                                            int rows, int cols, const float* x, int64_t x_ld,
                                                            float* y, int64_t y_ld) {
  pdl_wait();
  pdl_launch_dependents();
  extern __shared__ float xs[];
  const int h = blockIdx.x % heads;
  const float* W = w + static_cast<int64_t>(h) * rows * cols;
  const float* xi = x + static_cast<int64_t>(blockIdx.x) * x_ld;
  float* yo = y + static_cast<int64_t>(blockIdx.x) * y_ld;
  const int in = transpose ? rows : cols;
  for (int i = threadIdx.x; i < in; i += blockDim.x) xs[i] = xi[i];
  __syncthreads();
  if (transpose) {
    for (int j = threadIdx.x; j < cols; j += blockDim.x) {
      float s = 0.f;
      for (int i = 0; i < rows; ++i) s = fmaf(xs[i], W[static_cast<int64_t>(i) * cols + j], s);
      yo[j] = s;
    }
  } else {
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, nw = blockDim.x >> 5;
    for (int i = warp; i < rows; i += nw) {
      const float* Wi = W + static_cast<int64_t>(i) * cols;
      float s = 0.f;
      for (int j = lane; j < cols; j += 32) s = fmaf(Wi[j], xs[j], s);
      s = warp_sum(s);
      if (lane == 0) yo[i] = s;
    }
  }
}

// Segment s (width values at x + s * ld): pairs (x0, x1), (x2, x3), ... become [x0 x2 ... | x1 x3 ...].
// One warp per segment, through shared memory.
__global__ void __launch_bounds__(256) deinterleave_kernel(float* x, int64_t segments, int64_t ld, int width) {
  pdl_wait();
  pdl_launch_dependents();
  extern __shared__ float tmp[];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int64_t seg = static_cast<int64_t>(blockIdx.x) * (blockDim.x >> 5) + warp;
  if (seg >= segments) return;
  float* t = tmp + warp * width;
  float* v = x + seg * ld;
  for (int i = lane; i < width; i += 32) t[i] = v[i];
  __syncwarp();
  const int half = width / 2;
  for (int j = lane; j < half; j += 32) v[j] = t[2 * j], v[half + j] = t[2 * j + 1];
}

template <int VC>
void launch_latent(const LatentArgs& a, int64_t nseq, void* stream) {
  const size_t smem = sizeof(float) * (static_cast<size_t>(a.row) + kWarps * (2 + static_cast<size_t>(a.value_dim)));
  if (smem > 48 * 1024)
    UPG_CUDA_CHECK(cudaFuncSetAttribute(latent_attention_kernel<VC>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        static_cast<int>(smem)));
  launch_pdl("latent_attention_kernel", latent_attention_kernel<VC>, dim3(static_cast<unsigned>(nseq * a.n_heads)),
             kWarps * 32, smem, stream, a);
}

}  // namespace

void latent_attention(const AttentionParams& p, int64_t value_dim, const PagedKv& kv, const float* q,
                      const int32_t* pos, int64_t nseq, float* out, void* stream) {
  if (nseq <= 0) return;
  UPG_CHECK(p.n_kv_heads == 1 && value_dim > 0 && value_dim <= p.head_dim && value_dim <= 32 * kMaxValueCols,
            "latent_attention: one latent row per position of at least value_dim columns (value_dim ", value_dim,
            " of at most ", 32 * kMaxValueCols, ", row ", p.head_dim, ", ", p.n_kv_heads, " kv heads)");
  UPG_CHECK(kv.row_bytes == 2 * static_cast<size_t>(kv.head_dim) && kv.head_dim == p.head_dim,
            "latent_attention: the cache rows (", kv.head_dim, " bf16) are not the query's ", p.head_dim);
  const LatentArgs a{kv, q, pos, out, static_cast<int>(p.n_heads), static_cast<int>(p.head_dim),
                     static_cast<int>(value_dim), p.window, p.scale, p.softcap};
  const int64_t vc = (value_dim + 31) / 32;
  if (vc <= 4) launch_latent<4>(a, nseq, stream);
  else if (vc <= 8) launch_latent<8>(a, nseq, stream);
  else launch_latent<16>(a, nseq, stream);
}

void head_products(const float* w, bool transpose, int64_t heads, int64_t rows, int64_t cols, const float* x,
                   int64_t x_ld, int64_t n, float* y, int64_t y_ld, void* stream) {
  if (n <= 0 || heads <= 0) return;
  const int64_t in = transpose ? rows : cols;
  // compute-sanitizer (H100) found a 12-byte read of x's copy in shared memory at its start when it
  // held 1 value: the copy gets whole 16-byte words and one more word.
  const size_t smem = sizeof(float) * static_cast<size_t>((in + 3) / 4 * 4 + 4);
  UPG_CHECK(smem <= 48 * 1024, "head_products: an input of ", in, " values per head (at most 12284)");
  launch_pdl("head_products_kernel", head_products_kernel, dim3(static_cast<unsigned>(n * heads)), 256, smem, stream, w,
             transpose, static_cast<int>(heads), static_cast<int>(rows), static_cast<int>(cols), x, x_ld, y, y_ld);
}

void deinterleave_pairs(float* x, int64_t segments, int64_t ld, int64_t width, void* stream) {
  if (segments <= 0 || width <= 0) return;
  UPG_CHECK(width % 2 == 0 && width <= 1024, "deinterleave_pairs: width ", width, " (even, at most 1024)");
  const size_t smem = sizeof(float) * 8 * static_cast<size_t>(width);
  launch_pdl("deinterleave_kernel", deinterleave_kernel, dim3(static_cast<unsigned>((segments + 7) / 8)), 256, smem,
             stream, x, segments, ld, static_cast<int>(width));
}

}  // namespace upg::cuda
