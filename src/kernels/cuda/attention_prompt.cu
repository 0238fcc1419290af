// Prompt attention on tensor cores (FlashAttention-2 style) over the paged bf16 KV cache: the query
// tokens of one sequence in tiles of 16, all G = n_heads / n_kv_heads query heads of a kv head in one
// CTA (warp h: query head h of the group, 16 tokens), so every K and V chunk is read from the cache
// once per tile for all G heads. Same maths as decode_attention (attention_decode.cu) and
// kernels/cpu/attention.h. K and V are bf16 already; Q and the softmax weights P are fp32, so each is
// split into two bf16 terms (x = hi + lo, |x - hi - lo| <= 2^-17 |x|) and multiplied twice (mma.m16n8k16,
// fp32 accumulation): the result agrees with the fp32 decode kernel to fp32 rounding, so a token's
// output does not depend on which kernel the batch it came in took.
//
// Per CTA (tile, kv head, split): the positions [kmin, kmax] the tile needs (kmin = the lowest lo of
// its tokens, kmax = the highest pos), cut into `splits` ranges of whole 32-position chunks. Per chunk:
// the 32 K and V rows are copied to shared memory (16-byte loads; rows past the range zeroed), then
// each warp computes S = Q K^T (mma.m16n8k16 bf16, 16 x 32), applies scale, soft-cap and its tokens'
// causal / window masks, updates the online softmax of its 16 rows and adds P V (V read by
// ldmatrix.trans). One split: the CTA writes O / l; several: (max, sum, O) per split to the workspace,
// merged by attention_combine as for decode.
#include <cuda_bf16.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "kernels/cuda/attention_paged.cuh"
#include "kernels/cuda/cuda_check.cuh"
#include "kernels/cuda/cuda_ops.h"

namespace upg::cuda {

namespace {

constexpr int kMaxGroup = 8, kKeys = 32, kTargetCtas = 512;

struct PromptArgs {
  PagedKv kv;
  const float* q;
  const int32_t* pos;
  const int32_t* tiles;  // [ntiles][2] (first entry, count)
  float* out;
  float* ws;  // [entries][n_heads][splits][2 + head_dim]
  int n_heads, group, splits;
  int64_t window;
  float scale, softcap;
};

__device__ __forceinline__ void mma_bf16(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&v);
}

// (lo, hi) as bf16 pairs: returns round(x), lo_out = round(x - round(x)) (x = hi + lo to ~2^-17).
__device__ __forceinline__ uint32_t split_bf16(float x0, float x1, uint32_t& lo_out) {
  const __nv_bfloat162 h = __floats2bfloat162_rn(x0, x1);
  const float2 hf = __bfloat1622float2(h);
  lo_out = pack_bf16(x0 - hf.x, x1 - hf.y);
  return *reinterpret_cast<const uint32_t*>(&h);
}

template <int KD>  // head_dim / 16
__global__ void __launch_bounds__(kMaxGroup * 32) attn_prompt_kernel(PromptArgs a) {
  constexpr int D = KD * 16, LDS = D + 8, PIECES = D / 8;  // shared row stride (bf16); 16-byte pieces per row
  __shared__ __align__(16) __nv_bfloat16 ks[kKeys * LDS];
  __shared__ __align__(16) __nv_bfloat16 vs[kKeys * LDS];
  const int tile = blockIdx.x, kvh = blockIdx.y, split = blockIdx.z;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const int first = a.tiles[2 * tile], count = a.tiles[2 * tile + 1];
  const int head = kvh * a.group + warp;

  // The positions this tile needs, and this split's share of them (whole chunks).
  int64_t kmin = INT64_MAX, kmax = -1;
  for (int r = 0; r < count; ++r) {
    const int64_t p = a.pos[first + r];
    kmin = min(kmin, a.window > 0 ? max(int64_t{0}, p - a.window + 1) : int64_t{0});
    kmax = max(kmax, p);
  }
  int64_t chunk = (kmax - kmin + 1 + a.splits - 1) / a.splits;
  chunk = (chunk + kKeys - 1) / kKeys * kKeys;
  const int64_t k0 = kmin + split * chunk, k1 = min(kmax + 1, k0 + chunk);

  // This thread's two rows (tokens g and g + 8 of the tile) and their Q fragments.
  bool valid[2];
  int64_t rpos[2], rlo[2];
  uint32_t qf[KD][4], ql[KD][4];  // Q = hi + lo, both bf16
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    const int r = g + 8 * i;
    valid[i] = r < count;
    rpos[i] = valid[i] ? a.pos[first + r] : -1;
    rlo[i] = a.window > 0 ? max(int64_t{0}, rpos[i] - a.window + 1) : 0;
  }
#pragma unroll
  for (int kk = 0; kk < KD; ++kk) {
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      float2 x0 = make_float2(0.f, 0.f), x1 = x0;
      if (valid[i]) {
        const float* qr = a.q + (static_cast<int64_t>(first + g + 8 * i) * a.n_heads + head) * D + kk * 16 + 2 * t;
        x0 = *reinterpret_cast<const float2*>(qr);
        x1 = *reinterpret_cast<const float2*>(qr + 8);
      }
      qf[kk][i] = split_bf16(x0.x, x0.y, ql[kk][i]);          // a0 / a1: columns 2t, 2t + 1
      qf[kk][2 + i] = split_bf16(x1.x, x1.y, ql[kk][2 + i]);  // a2 / a3: columns 2t + 8, 2t + 9
    }
  }

  float o[2 * KD][4];
#pragma unroll
  for (int n = 0; n < 2 * KD; ++n) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.f;
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};

  for (int64_t c0 = k0; c0 < k1; c0 += kKeys) {
    __syncthreads();  // the previous chunk's reads are done
    for (int i = threadIdx.x; i < 2 * kKeys * PIECES; i += blockDim.x) {
      const int part = i / (kKeys * PIECES), j = (i / PIECES) % kKeys, piece = i % PIECES;
      const int64_t p = c0 + j;
      uint4 v = make_uint4(0, 0, 0, 0);
      if (p < k1) v = reinterpret_cast<const uint4*>(kv_row(a.kv, first, part, kvh, p))[piece];
      *reinterpret_cast<uint4*>((part ? vs : ks) + j * LDS + piece * 8) = v;
    }
    __syncthreads();

    float s[4][4];
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.f;
#pragma unroll
      for (int kk = 0; kk < KD; ++kk) {
        const __nv_bfloat16* kr = ks + (8 * j + g) * LDS + kk * 16 + 2 * t;
        const uint32_t b0 = *reinterpret_cast<const uint32_t*>(kr), b1 = *reinterpret_cast<const uint32_t*>(kr + 8);
        mma_bf16(s[j], qf[kk], b0, b1);
        mma_bf16(s[j], ql[kk], b0, b1);
      }
    }
    float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int j = 0; j < 4; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int i = e >> 1;
        const int64_t p = c0 + 8 * j + 2 * t + (e & 1);
        float x = s[j][e] * a.scale;
        if (a.softcap > 0.f) x = a.softcap * tanhf(x / a.softcap);
        x = (p < k1 && p >= rlo[i] && p <= rpos[i]) ? x : -INFINITY;
        s[j][e] = x;
        mx[i] = fmaxf(mx[i], x);
      }
    float ms[2];
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      mx[i] = fmaxf(mx[i], __shfl_xor_sync(0xffffffffu, mx[i], 1));
      mx[i] = fmaxf(mx[i], __shfl_xor_sync(0xffffffffu, mx[i], 2));
      const float mn = fmaxf(m[i], mx[i]);
      ms[i] = mn == -INFINITY ? 0.f : mn;  // no position yet: every weight is exp(-inf) = 0
      const float corr = __expf(m[i] - ms[i]);
      m[i] = mn;
      l[i] *= corr;
#pragma unroll
      for (int n = 0; n < 2 * KD; ++n) o[n][2 * i] *= corr, o[n][2 * i + 1] *= corr;
    }
    uint32_t pa[2][4], pl[2][4];  // P = hi + lo, both bf16
#pragma unroll
    for (int j = 0; j < 4; ++j) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        s[j][e] = __expf(s[j][e] - ms[e >> 1]);
        l[e >> 1] += s[j][e];
      }
      pa[j >> 1][2 * (j & 1)] = split_bf16(s[j][0], s[j][1], pl[j >> 1][2 * (j & 1)]);          // row g
      pa[j >> 1][2 * (j & 1) + 1] = split_bf16(s[j][2], s[j][3], pl[j >> 1][2 * (j & 1) + 1]);  // row g + 8
    }
#pragma unroll
    for (int kk = 0; kk < 2; ++kk)
#pragma unroll
      for (int n16 = 0; n16 < KD; ++n16) {
        const __nv_bfloat16* vp = vs + (kk * 16 + (lane & 7) + 8 * ((lane >> 3) & 1)) * LDS + n16 * 16 + 8 * (lane >> 4);
        const uint32_t addr = static_cast<uint32_t>(__cvta_generic_to_shared(vp));
        uint32_t b0, b1, b2, b3;
        asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                     : "=r"(b0), "=r"(b1), "=r"(b2), "=r"(b3)
                     : "r"(addr));
        mma_bf16(o[2 * n16], pa[kk], b0, b1);
        mma_bf16(o[2 * n16], pl[kk], b0, b1);
        mma_bf16(o[2 * n16 + 1], pa[kk], b2, b3);
        mma_bf16(o[2 * n16 + 1], pl[kk], b2, b3);
      }
  }

#pragma unroll
  for (int i = 0; i < 2; ++i) {
    l[i] += __shfl_xor_sync(0xffffffffu, l[i], 1);
    l[i] += __shfl_xor_sync(0xffffffffu, l[i], 2);
    if (!valid[i]) continue;
    const int64_t row = static_cast<int64_t>(first + g + 8 * i) * a.n_heads + head;
    if (a.splits == 1) {
      const float inv = 1.f / l[i];
      float* dst = a.out + row * D + 2 * t;
#pragma unroll
      for (int n = 0; n < 2 * KD; ++n)
        *reinterpret_cast<float2*>(dst + 8 * n) = make_float2(o[n][2 * i] * inv, o[n][2 * i + 1] * inv);
    } else {
      float* w = a.ws + (row * a.splits + split) * (2 + D);
      if (t == 0) w[0] = m[i], w[1] = l[i];
#pragma unroll
      for (int n = 0; n < 2 * KD; ++n)
        *reinterpret_cast<float2*>(w + 2 + 8 * n + 2 * t) = make_float2(o[n][2 * i], o[n][2 * i + 1]);
    }
  }
}

}  // namespace

std::vector<int32_t> prompt_attention_tiles(const uint8_t* const* table, int64_t entries, int64_t max_blocks) {
  std::vector<int32_t> tiles;
  for (int64_t i = 0; i < entries * max_blocks; ++i)
    if (reinterpret_cast<uintptr_t>(table[i]) % 16 != 0) return {};  // the kernel's 16-byte loads
  for (int64_t e = 0; e < entries;) {
    const uint8_t* const* row = table + e * max_blocks;
    int64_t n = 1;
    while (e + n < entries && n < kPromptTileTokens && std::equal(row, row + max_blocks, table + (e + n) * max_blocks))
      ++n;
    tiles.push_back(static_cast<int32_t>(e));
    tiles.push_back(static_cast<int32_t>(n));
    e += n;
  }
  return tiles;
}

bool prompt_attention_supported(const AttentionParams& p, const PagedKv& kv) {
  const bool dims = p.head_dim % 16 == 0 && p.head_dim >= 16 && p.head_dim <= 128;
  const bool group = p.n_kv_heads > 0 && p.n_heads % p.n_kv_heads == 0 && p.n_heads / p.n_kv_heads <= kMaxGroup;
  const bool rows = kv.head_dim == p.head_dim && kv.row_bytes == 2 * static_cast<size_t>(p.head_dim) &&
                    (kv.layer_offset | kv.kv_offset | kv.head_stride | kv.row_bytes) % 16 == 0;
  return dims && group && rows;
}

int prompt_attention_splits(const AttentionParams& p, int64_t ntiles, int64_t max_pos) {
  const int64_t ctas = std::max<int64_t>(1, ntiles * p.n_kv_heads);
  return static_cast<int>(std::clamp<int64_t>((kTargetCtas + ctas - 1) / ctas, 1, decode_attention_splits(max_pos)));
}

void prompt_attention(const AttentionParams& p, const PagedKv& kv, const float* q, const int32_t* pos,
                      const int32_t* tiles, int64_t ntiles, int64_t nseq, int64_t max_pos, float* out, void* workspace,
                      void* stream) {
  UPG_CHECK(prompt_attention_supported(p, kv), "prompt_attention: head_dim ", p.head_dim, " (16..128, a multiple of 16), ",
            p.n_heads, " / ", p.n_kv_heads, " heads (groups of at most ", kMaxGroup,
            ") and 16-byte aligned bf16 rows are required; use decode_attention");
  if (ntiles <= 0) return;
  PromptArgs a;
  a.kv = kv;
  a.q = q;
  a.pos = pos;
  a.tiles = tiles;
  a.out = out;
  a.ws = static_cast<float*>(workspace);
  a.n_heads = static_cast<int>(p.n_heads);
  a.group = static_cast<int>(p.n_heads / p.n_kv_heads);
  a.splits = prompt_attention_splits(p, ntiles, max_pos);
  a.window = p.window;
  a.scale = p.scale;
  a.softcap = p.softcap;
  UPG_CHECK(a.splits == 1 || workspace, "prompt_attention: workspace required (decode_attention_workspace)");
  const dim3 grid(static_cast<unsigned>(ntiles), static_cast<unsigned>(p.n_kv_heads), static_cast<unsigned>(a.splits));
  const unsigned threads = static_cast<unsigned>(32 * a.group);
  switch (p.head_dim / 16) {
    case 1: attn_prompt_kernel<1><<<grid, threads, 0, as_stream(stream)>>>(a); break;
    case 2: attn_prompt_kernel<2><<<grid, threads, 0, as_stream(stream)>>>(a); break;
    case 3: attn_prompt_kernel<3><<<grid, threads, 0, as_stream(stream)>>>(a); break;
    case 4: attn_prompt_kernel<4><<<grid, threads, 0, as_stream(stream)>>>(a); break;
    case 5: attn_prompt_kernel<5><<<grid, threads, 0, as_stream(stream)>>>(a); break;
    case 6: attn_prompt_kernel<6><<<grid, threads, 0, as_stream(stream)>>>(a); break;
    case 7: attn_prompt_kernel<7><<<grid, threads, 0, as_stream(stream)>>>(a); break;
    default: attn_prompt_kernel<8><<<grid, threads, 0, as_stream(stream)>>>(a); break;
  }
  UPG_CUDA_LAUNCHED("attn_prompt_kernel");
  if (a.splits > 1) attention_combine(a.ws, nseq * p.n_heads, a.splits, static_cast<int>(p.head_dim), out, stream);
}

}  // namespace upg::cuda
