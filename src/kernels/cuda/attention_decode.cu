// Decode attention (one query token per entry of the block-pointer table; entries may share a
// sequence) over the paged bf16 KV cache, GQA-aware and split over the positions for long contexts
// (FlashDecoding). Same maths as kernels/cpu/attention.h:
// softmax(q.k * scale [soft-capped]) . v over positions [lo, pos], lo = max(0, pos - window + 1)
// with a sliding window.
//
// Grid (entry, kv head, split). The CTA's 4 warps walk the split's positions (warp w takes every
// 4th); every K and V row is read once for all G = n_heads / n_kv_heads query heads of the kv head
// (G <= 8), with lane l holding bf16 pairs l, l + 32, ... of the row. Each warp keeps an online
// softmax (max, sum, weighted V) per query head; the warps merge in shared memory. With one split
// the CTA writes the output; otherwise it writes (max, sum, V sum) per split to the workspace and
// attn_combine_kernel merges the splits.
#include <cuda_bf16.h>

#include <algorithm>
#include <cmath>

#include "kernels/cuda/attention_paged.cuh"
#include "kernels/cuda/cuda_check.cuh"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/pdl.cuh"

namespace upg::cuda {

namespace {

constexpr int kMaxGroup = 8, kWarps = 4, kSplitPositions = 256, kMaxSplits = 64;

struct AttnArgs {
  PagedKv kv;
  const float* q;
  const int32_t* pos;
  float* out;
  float* ws;  // [nseq][n_heads][splits][2 + head_dim]
  int n_heads, n_kv_heads, head_dim, group, splits;
  int64_t window;
  float scale, softcap;
};

template <int E2>  // bf16 pairs per lane: ceil(head_dim / 64)
__global__ void __launch_bounds__(kWarps * 32) attn_decode_kernel(AttnArgs a) {
  pdl_wait();
  pdl_launch_dependents();
  const int seq = blockIdx.x, kvh = blockIdx.y, split = blockIdx.z;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int hp = a.head_dim / 2;  // pairs per row
  const int64_t pos = a.pos[seq];
  const int64_t lo = a.window > 0 ? max(int64_t{0}, pos - a.window + 1) : 0;
  const int64_t len = pos - lo + 1, chunk = (len + a.splits - 1) / a.splits;
  const int64_t p0 = lo + split * chunk, p1 = min(pos + 1, p0 + chunk);

  float2 q[kMaxGroup][E2], acc[kMaxGroup][E2];
  float m[kMaxGroup], l[kMaxGroup];
#pragma unroll
  for (int h = 0; h < kMaxGroup; ++h) {
    m[h] = -INFINITY, l[h] = 0.f;
#pragma unroll
    for (int e = 0; e < E2; ++e) {
      const int i2 = lane + 32 * e;
      acc[h][e] = make_float2(0.f, 0.f);
      q[h][e] = make_float2(0.f, 0.f);
      if (h < a.group && i2 < hp) {
        const float* qh = a.q + (static_cast<int64_t>(seq) * a.n_heads + kvh * a.group + h) * a.head_dim;
        q[h][e] = make_float2(qh[2 * i2], qh[2 * i2 + 1]);
      }
    }
  }
  for (int64_t p = p0 + warp; p < p1; p += kWarps) {
    const __nv_bfloat162* kr = kv_row(a.kv, seq, 0, kvh, p);
    const __nv_bfloat162* vr = kv_row(a.kv, seq, 1, kvh, p);
    float2 k[E2], v[E2];
#pragma unroll
    for (int e = 0; e < E2; ++e) {
      const int i2 = lane + 32 * e;
      k[e] = i2 < hp ? __bfloat1622float2(kr[i2]) : make_float2(0.f, 0.f);
      v[e] = i2 < hp ? __bfloat1622float2(vr[i2]) : make_float2(0.f, 0.f);
    }
#pragma unroll
    for (int h = 0; h < kMaxGroup; ++h) {
      if (h >= a.group) break;
      float d = 0.f;
#pragma unroll
      for (int e = 0; e < E2; ++e) d = fmaf(q[h][e].x, k[e].x, fmaf(q[h][e].y, k[e].y, d));
#pragma unroll
      for (int o = 16; o > 0; o >>= 1) d += __shfl_xor_sync(0xffffffffu, d, o);
      float s = d * a.scale;
      if (a.softcap > 0.f) s = a.softcap * tanhf(s / a.softcap);
      const float mn = fmaxf(m[h], s), corr = __expf(m[h] - mn), w = __expf(s - mn);
      m[h] = mn;
      l[h] = l[h] * corr + w;
#pragma unroll
      for (int e = 0; e < E2; ++e) {
        acc[h][e].x = acc[h][e].x * corr + w * v[e].x;
        acc[h][e].y = acc[h][e].y * corr + w * v[e].y;
      }
    }
  }
  // Merge the warps: shared [warp][h] max/sum and [warp][h][head_dim] sums.
  extern __shared__ float sh[];
  float* sm = sh;                                 // kWarps * group
  float* sl = sm + kWarps * kMaxGroup;            // kWarps * group
  float* sa = sl + kWarps * kMaxGroup;            // kWarps * group * head_dim
#pragma unroll
  for (int h = 0; h < kMaxGroup; ++h) {
    if (h >= a.group) break;
    if (lane == 0) sm[warp * kMaxGroup + h] = m[h], sl[warp * kMaxGroup + h] = l[h];
#pragma unroll
    for (int e = 0; e < E2; ++e) {
      const int i2 = lane + 32 * e;
      if (i2 < hp) {
        float* d = sa + (static_cast<int64_t>(warp) * kMaxGroup + h) * a.head_dim + 2 * i2;
        d[0] = acc[h][e].x, d[1] = acc[h][e].y;
      }
    }
  }
  __syncthreads();
  for (int i = threadIdx.x; i < a.group * a.head_dim; i += blockDim.x) {
    const int h = i / a.head_dim, c = i % a.head_dim;
    float M = -INFINITY;
    for (int w = 0; w < kWarps; ++w) M = fmaxf(M, sm[w * kMaxGroup + h]);
    float L = 0.f, A = 0.f;
    if (M != -INFINITY) {
      for (int w = 0; w < kWarps; ++w) {
        const float f = __expf(sm[w * kMaxGroup + h] - M);
        L += sl[w * kMaxGroup + h] * f;
        A += sa[(w * kMaxGroup + h) * a.head_dim + c] * f;
      }
    }
    const int head = kvh * a.group + h;
    if (a.splits == 1) {
      a.out[(static_cast<int64_t>(seq) * a.n_heads + head) * a.head_dim + c] = A / L;
    } else {
      float* wsp = a.ws + ((static_cast<int64_t>(seq) * a.n_heads + head) * a.splits + split) * (2 + a.head_dim);
      if (c == 0) wsp[0] = M, wsp[1] = L;
      wsp[2 + c] = A;
    }
  }
}

__global__ void attn_combine_kernel(const float* __restrict__ ws, int splits, int head_dim, float* out) {
  pdl_wait();
  pdl_launch_dependents();
  const int64_t sh = blockIdx.x;  // seq * n_heads + head
  const float* base = ws + sh * splits * (2 + head_dim);
  float M = -INFINITY;
  for (int s = 0; s < splits; ++s) M = fmaxf(M, base[s * (2 + head_dim)]);
  for (int c = threadIdx.x; c < head_dim; c += blockDim.x) {
    float L = 0.f, A = 0.f;
    for (int s = 0; s < splits; ++s) {
      const float* p = base + s * (2 + head_dim);
      if (p[0] == -INFINITY) continue;
      const float f = __expf(p[0] - M);
      L += p[1] * f;
      A += p[2 + c] * f;
    }
    out[sh * head_dim + c] = A / L;
  }
}

int pick_splits(int64_t max_pos) {
  return static_cast<int>(std::clamp<int64_t>((max_pos + kSplitPositions) / kSplitPositions, 1, kMaxSplits));
}

}  // namespace

void attention_combine(const float* ws, int64_t rows, int splits, int head_dim, float* out, void* stream) {
  if (rows <= 0) return;
  launch_pdl("attn_combine_kernel", attn_combine_kernel, static_cast<unsigned>(rows), 128, 0, stream, ws, splits, head_dim, out);
}

int decode_attention_splits(int64_t max_pos) { return pick_splits(max_pos); }

size_t decode_attention_workspace(const AttentionParams& p, int64_t nseq, int64_t max_pos) {
  const int splits = pick_splits(max_pos);
  if (splits == 1) return 0;
  return static_cast<size_t>(nseq) * p.n_heads * splits * (2 + p.head_dim) * sizeof(float);
}

void decode_attention(const AttentionParams& p, const PagedKv& kv, const float* q, const int32_t* pos, int64_t nseq,
                      int64_t max_pos, float* out, void* workspace, void* stream) {
  UPG_CHECK(p.n_kv_heads > 0 && p.n_heads % p.n_kv_heads == 0 && p.n_heads / p.n_kv_heads <= kMaxGroup,
            "decode_attention: n_heads ", p.n_heads, " / n_kv_heads ", p.n_kv_heads, " must be a whole group of at most ",
            kMaxGroup);
  UPG_CHECK(p.head_dim % 2 == 0 && p.head_dim <= 256 && kv.head_dim == p.head_dim && kv.row_bytes == 2 * static_cast<size_t>(p.head_dim),
            "decode_attention: head_dim ", p.head_dim, " must be even, <= 256, with bf16 rows of 2 * head_dim bytes");
  if (nseq <= 0) return;
  AttnArgs a;
  a.kv = kv;
  a.q = q;
  a.pos = pos;
  a.out = out;
  a.ws = static_cast<float*>(workspace);
  a.n_heads = static_cast<int>(p.n_heads);
  a.n_kv_heads = static_cast<int>(p.n_kv_heads);
  a.head_dim = static_cast<int>(p.head_dim);
  a.group = static_cast<int>(p.n_heads / p.n_kv_heads);
  a.splits = pick_splits(max_pos);
  a.window = p.window;
  a.scale = p.scale;
  a.softcap = p.softcap;
  UPG_CHECK(a.splits == 1 || workspace, "decode_attention: workspace required (decode_attention_workspace)");
  const size_t smem = (2 * kWarps * kMaxGroup + static_cast<size_t>(kWarps) * kMaxGroup * p.head_dim) * sizeof(float);
  const dim3 grid(static_cast<unsigned>(nseq), static_cast<unsigned>(p.n_kv_heads), static_cast<unsigned>(a.splits));
  const int e2 = static_cast<int>((p.head_dim + 63) / 64);
  auto go = [&](auto kernel) {
    UPG_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
    launch_pdl("attn_decode_kernel", kernel, grid, kWarps * 32, smem, stream, a);
  };
  switch (e2) {
    case 1: go(attn_decode_kernel<1>); break;
    case 2: go(attn_decode_kernel<2>); break;
    case 3: go(attn_decode_kernel<3>); break;
    default: go(attn_decode_kernel<4>); break;
  }
  if (a.splits > 1) {
    attention_combine(a.ws, nseq * p.n_heads, a.splits, a.head_dim, out, stream);
  }
}

}  // namespace upg::cuda
