// CUDA kernels for the codebook codec (layout: docs/CODECS.md, "codebook"): decode to BF16 and
// matrix-vector product straight from the packed codes. Header-only so a CUDA backend and the
// benchmark (bench/cuda/bench_codebook_cuda.cu) compile them in their own translation unit.
//
// Layout recap: qweight U8 [rows, RB] (row bit stream, code j at bits [j*k, j*k+k), LSB first),
// scales F16 [rows, ng] (group G, a multiple of 8), codebook F32 [nb, 2^k] (CB rows per codebook).
// Since G is a multiple of 8, every run of 8 codes is byte-aligned and fills exactly k bytes.
// These kernels require cols % 8 == 0 (true for every real model shape); the CPU codec handles the rest.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cstdint>

namespace upg::cuda {

struct CodebookView {
  const uint8_t* qweight;
  const __half* scales;
  const float* codebook;
  int rows, cols, bits, group, codebook_rows, row_bytes, groups_per_row;
};

// 8 consecutive codes starting at code index 8*chunk of row r, as one 64-bit word (k <= 8).
__device__ inline uint64_t load_chunk(const CodebookView& m, int r, int chunk) {
  const uint8_t* p = m.qweight + static_cast<size_t>(r) * m.row_bytes + static_cast<size_t>(chunk) * m.bits;
  uint64_t w = 0;
#pragma unroll
  for (int b = 0; b < 8; ++b)
    if (b < m.bits) w |= static_cast<uint64_t>(p[b]) << (8 * b);
  return w;
}

// One thread per 8 weights: out[r][8c .. 8c+7] as BF16 (one 16-byte store).
__global__ void codebook_decode_bf16(CodebookView m, __nv_bfloat16* __restrict__ out) {
  const int chunks = m.cols / 8;
  const size_t idx = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= static_cast<size_t>(m.rows) * chunks) return;
  const int r = static_cast<int>(idx / chunks), c = static_cast<int>(idx % chunks);
  const uint64_t w = load_chunk(m, r, c);
  const float s = __half2float(m.scales[static_cast<size_t>(r) * m.groups_per_row + (c * 8) / m.group]);
  const float* cb = m.codebook + static_cast<size_t>(r / m.codebook_rows) * (1 << m.bits);
  const uint32_t mask = (1u << m.bits) - 1;
  __align__(16) __nv_bfloat16 v[8];
#pragma unroll
  for (int t = 0; t < 8; ++t) v[t] = __float2bfloat16(cb[(w >> (t * m.bits)) & mask] * s);
  *reinterpret_cast<uint4*>(out + static_cast<size_t>(r) * m.cols + static_cast<size_t>(c) * 8) =
      *reinterpret_cast<const uint4*>(v);
}

// y[r] = sum_j W[r][j] x[j]: one warp per row, each lane takes chunks of 8 codes, fp32 accumulation.
__global__ void codebook_gemv(CodebookView m, const float* __restrict__ x, float* __restrict__ y) {
  const int warps_per_block = blockDim.x / 32;
  const int r = blockIdx.x * warps_per_block + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (r >= m.rows) return;
  const float* cb = m.codebook + static_cast<size_t>(r / m.codebook_rows) * (1 << m.bits);
  const uint32_t mask = (1u << m.bits) - 1;
  float acc = 0.f;
  for (int c = lane; c < m.cols / 8; c += 32) {
    const uint64_t w = load_chunk(m, r, c);
    const float s = __half2float(m.scales[static_cast<size_t>(r) * m.groups_per_row + (c * 8) / m.group]);
    const float4 xa = *reinterpret_cast<const float4*>(x + c * 8);
    const float4 xb = *reinterpret_cast<const float4*>(x + c * 8 + 4);
    const float xs[8] = {xa.x, xa.y, xa.z, xa.w, xb.x, xb.y, xb.z, xb.w};
    float part = 0.f;
#pragma unroll
    for (int t = 0; t < 8; ++t) part += cb[(w >> (t * m.bits)) & mask] * xs[t];
    acc += part * s;
  }
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) acc += __shfl_down_sync(0xffffffffu, acc, off);
  if (lane == 0) y[r] = acc;
}

// ---- Wide variants: 32 codes per thread from BITS aligned 32-bit words ----------------------------
// Require cols % 32 == 0 and group % 32 == 0 (then each row's stream is a whole number of words and
// one scale covers the 32 codes). BITS is a template parameter so every shift is a constant.

template <int BITS>
__device__ inline void load_words(const CodebookView& m, int r, int c32, uint32_t (&w)[BITS + 1]) {
  const uint32_t* p = reinterpret_cast<const uint32_t*>(m.qweight + static_cast<size_t>(r) * m.row_bytes) + c32 * BITS;
#pragma unroll
  for (int i = 0; i < BITS; ++i) w[i] = p[i];
  w[BITS] = 0;
}

template <int BITS>
__device__ inline uint32_t code_at(const uint32_t (&w)[BITS + 1], int t) {
  const int bit = t * BITS;  // constant after unrolling
  return __funnelshift_r(w[bit >> 5], w[(bit >> 5) + 1], bit & 31) & ((1u << BITS) - 1);
}

// One thread per 32 weights: four 16-byte BF16 stores.
template <int BITS>
__global__ void codebook_decode_bf16_wide(CodebookView m, __nv_bfloat16* __restrict__ out) {
  __shared__ float cb_s[1 << BITS];
  const int per_row = m.cols / 32;
  const size_t idx = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int r = static_cast<int>(min(idx, static_cast<size_t>(m.rows) * per_row - 1) / per_row);
  // Rows of one block share a codebook unless codebook_rows is small: load the first row's table
  // and fall back to global reads for rows of another block.
  const int r0 = static_cast<int>(min(static_cast<size_t>(blockIdx.x) * blockDim.x, static_cast<size_t>(m.rows) * per_row - 1) / per_row);
  const float* cb0 = m.codebook + static_cast<size_t>(r0 / m.codebook_rows) * (1 << BITS);
  for (int i = threadIdx.x; i < (1 << BITS); i += blockDim.x) cb_s[i] = cb0[i];
  __syncthreads();
  if (idx >= static_cast<size_t>(m.rows) * per_row) return;
  const int c32 = static_cast<int>(idx % per_row);
  const bool same = (r / m.codebook_rows) == (r0 / m.codebook_rows);
  const float* cb = same ? cb_s : m.codebook + static_cast<size_t>(r / m.codebook_rows) * (1 << BITS);
  uint32_t w[BITS + 1];
  load_words<BITS>(m, r, c32, w);
  const float s = __half2float(m.scales[static_cast<size_t>(r) * m.groups_per_row + (c32 * 32) / m.group]);
  uint4* o = reinterpret_cast<uint4*>(out + static_cast<size_t>(r) * m.cols + static_cast<size_t>(c32) * 32);
#pragma unroll
  for (int q = 0; q < 4; ++q) {
    __align__(16) __nv_bfloat16 v[8];
#pragma unroll
    for (int t = 0; t < 8; ++t) v[t] = __float2bfloat16(cb[code_at<BITS>(w, q * 8 + t)] * s);
    o[q] = *reinterpret_cast<const uint4*>(v);
  }
}

// y = W x, one warp per row, each lane 32 codes per step; codebook in shared memory.
template <int BITS>
__global__ void codebook_gemv_wide(CodebookView m, const float* __restrict__ x, float* __restrict__ y) {
  __shared__ float cb_s[8][1 << BITS];  // one table per warp (blockDim.x == 256)
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int r = blockIdx.x * (blockDim.x / 32) + warp;
  if (r >= m.rows) return;
  const float* cbg = m.codebook + static_cast<size_t>(r / m.codebook_rows) * (1 << BITS);
  for (int i = lane; i < (1 << BITS); i += 32) cb_s[warp][i] = cbg[i];
  __syncwarp();
  const float* cb = cb_s[warp];
  float acc = 0.f;
  for (int c32 = lane; c32 < m.cols / 32; c32 += 32) {
    uint32_t w[BITS + 1];
    load_words<BITS>(m, r, c32, w);
    const float s = __half2float(m.scales[static_cast<size_t>(r) * m.groups_per_row + (c32 * 32) / m.group]);
    const float4* xv = reinterpret_cast<const float4*>(x + c32 * 32);
    float part = 0.f;
#pragma unroll
    for (int q = 0; q < 8; ++q) {
      const float4 xx = __ldg(xv + q);
      part += cb[code_at<BITS>(w, 4 * q + 0)] * xx.x + cb[code_at<BITS>(w, 4 * q + 1)] * xx.y +
              cb[code_at<BITS>(w, 4 * q + 2)] * xx.z + cb[code_at<BITS>(w, 4 * q + 3)] * xx.w;
    }
    acc += part * s;
  }
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) acc += __shfl_down_sync(0xffffffffu, acc, off);
  if (lane == 0) y[r] = acc;
}

}  // namespace upg::cuda
