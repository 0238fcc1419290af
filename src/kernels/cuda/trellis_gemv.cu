// The trellis codec on the GPU (docs/CODECS.md, "trellis"; layout in gemv_layout.h): the skinny
// product straight from each row's bit stream, and a decode to bf16 for the prefill GEMM.
//
// GEMV: a block of up to 8 warps multiplies R rows (R = 4 for one token, fewer for more); the warps
// split the columns (warp w takes every 8th step of 256 columns, each lane 8 consecutive weights of each
// row per step) and add their sums through shared memory at the end, so long rows do not run on one
// warp. Per lane and step: the 64 stream bits from the first weight's state (8 weights need at most
// 7 K + L <= 51 of them) come from three 32-bit words and two funnel shifts; weight i's state is the
// top L bits of that window shifted left by i K (a constant), its code one multiply-add and one byte
// sum (dp4a, accumulated onto the bits of 2^23 so that the float comes out with one subtraction, no
// conversion), so the codes never pass through memory. The R rows share the lane's x values (read once
// per step); the 8 weights of a row share one group (the group is a multiple of 8), so the scale
// multiplies the lane's partial sum once. Up to 8 tokens per pass, more in passes.
#include <algorithm>
#include <cstdlib>

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "kernels/cuda/cuda_check.cuh"
#include "kernels/cuda/gemv_layout.h"
#include "kernels/trellis_code.h"

namespace upg::cuda {

namespace {

constexpr int kWarps = 8;  // per block, at most

// The 64 stream bits of a row starting at stream bit b, the first most significant.
__device__ __forceinline__ uint64_t window64(const uint32_t* __restrict__ w, int64_t b) {
  const int64_t i = b >> 5;
  const int sh = static_cast<int>(b & 31);
  const uint32_t w0 = __ldg(w + i), w1 = __ldg(w + i + 1), w2 = __ldg(w + i + 2);
  return static_cast<uint64_t>(__funnelshift_l(w1, w0, sh)) << 32 | __funnelshift_l(w2, w1, sh);
}

// The integer codes (code x 128, in [-510, 510], as floats) of the 8 weights whose first state starts
// the window; rshift = 32 - L.
template <int K>
__device__ __forceinline__ void codes8(uint64_t win, int rshift, float (&v)[8]) {
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    const uint32_t s = static_cast<uint32_t>((win << (i * K)) >> 32) >> rshift;
    const uint32_t h = s * trellis::kCodeMul + trellis::kCodeAdd;
    // 2^23 + byte sum, as float bits: exact (the sum is below 2^11).
    v[i] = __uint_as_float(__dp4a(h, 0x01010101u, 0x4B000000u)) - (8388608.0f + 510.0f);
  }
}

struct GemvArgs {
  const uint32_t* w;
  const __half* scales;
  const float* x;
  float* y;
  int64_t rows, cols, pitch, ng;
  int L, group, gshift, n;  // gshift: log2(group) when a power of two, else -1; n <= NT
  bool accumulate, vec;  // vec: float4 loads of x (cols % 4 == 0 and x 16-byte aligned)
};

__device__ __forceinline__ int group_of(int j, int group, int gshift) {
  return gshift >= 0 ? j >> gshift : static_cast<int>(static_cast<unsigned>(j) / static_cast<unsigned>(group));
}

// NT: tokens per pass (n <= NT); R: rows per block (all its warps work on the same R rows).
template <int K, int NT, int R>
__global__ void __launch_bounds__(kWarps * 32) trellis_gemv_kernel(GemvArgs a) {
  __shared__ float part[kWarps][R * NT];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  const int64_t r0 = static_cast<int64_t>(blockIdx.x) * R;
  const int rshift = 32 - a.L, cols = static_cast<int>(a.cols);
  const uint32_t* wrow[R];
  const __half* srow[R];
#pragma unroll
  for (int q = 0; q < R; ++q) {
    const int64_t r = r0 + q < a.rows ? r0 + q : a.rows - 1;  // a short last block repeats the last row
    wrow[q] = a.w + r * a.pitch;
    srow[q] = a.scales + r * a.ng;
  }
  float acc[R][NT] = {};
  for (int j0 = warp * 256 + lane * 8; j0 < cols; j0 += warps * 256) {
    float xv[NT][8];
    const bool whole = j0 + 8 <= cols;
#pragma unroll
    for (int t = 0; t < NT; ++t) {
      const float* xt = a.x + static_cast<int64_t>(t) * cols + j0;
      if (t < a.n && whole && a.vec) {
        const float4 u = __ldg(reinterpret_cast<const float4*>(xt)), q = __ldg(reinterpret_cast<const float4*>(xt + 4));
        xv[t][0] = u.x, xv[t][1] = u.y, xv[t][2] = u.z, xv[t][3] = u.w;
        xv[t][4] = q.x, xv[t][5] = q.y, xv[t][6] = q.z, xv[t][7] = q.w;
      } else {
#pragma unroll
        for (int i = 0; i < 8; ++i) xv[t][i] = t < a.n && j0 + i < cols ? __ldg(xt + i) : 0.f;
      }
    }
    const int gi = group_of(j0, a.group, a.gshift);
#pragma unroll
    for (int q = 0; q < R; ++q) {
      float v[8];
      codes8<K>(window64(wrow[q], static_cast<int64_t>(j0) * K), rshift, v);
      const float sc = __half2float(srow[q][gi]) * trellis::kCodeUnit;
#pragma unroll
      for (int t = 0; t < NT; ++t) {
        float p = 0.f;
#pragma unroll
        for (int i = 0; i < 8; ++i) p += v[i] * xv[t][i];
        acc[q][t] += sc * p;
      }
    }
  }
#pragma unroll
  for (int q = 0; q < R; ++q)
#pragma unroll
    for (int t = 0; t < NT; ++t) {
      float s = acc[q][t];
#pragma unroll
      for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
      if (lane == 0) part[warp][q * NT + t] = s;
    }
  __syncthreads();
  if (threadIdx.x < R * NT) {
    const int q = threadIdx.x / NT, t = threadIdx.x % NT;
    if (t < a.n && r0 + q < a.rows) {
      float s = 0.f;
      for (int w = 0; w < warps; ++w) s += part[w][threadIdx.x];
      float* yo = a.y + static_cast<int64_t>(t) * a.rows + r0 + q;
      *yo = a.accumulate ? *yo + s : s;
    }
  }
}

struct DecodeArgs {
  const uint32_t* w;
  const __half* scales;
  __nv_bfloat16* out;
  int64_t r0, cols, pitch, ng, ld;
  int L, group;
};

// Row r0 + blockIdx.x, 8 weights per thread: W = f32(scale) * code, as the CPU decoder computes it.
template <int K>
__global__ void trellis_to_bf16_kernel(DecodeArgs a) {
  const int64_t r = a.r0 + blockIdx.x;
  const int64_t j0 = (static_cast<int64_t>(blockIdx.y) * blockDim.x + threadIdx.x) * 8;
  if (j0 >= a.cols) return;
  float v[8];
  codes8<K>(window64(a.w + r * a.pitch, j0 * K), 32 - a.L, v);
  const float sc = __half2float(a.scales[r * a.ng + static_cast<int>(j0) / a.group]);
  __nv_bfloat16* o = a.out + blockIdx.x * a.ld + j0;
  if (j0 + 8 <= a.cols) {  // one 16-byte store (ld and j0 are multiples of 8)
    __nv_bfloat162 b[4];
#pragma unroll
    for (int i = 0; i < 4; ++i)
      b[i] = __floats2bfloat162_rn(sc * (v[2 * i] * trellis::kCodeUnit), sc * (v[2 * i + 1] * trellis::kCodeUnit));
    *reinterpret_cast<uint4*>(o) = *reinterpret_cast<const uint4*>(b);
  } else {
#pragma unroll
    for (int i = 0; i < 8; ++i)
      if (j0 + i < a.cols) o[i] = __float2bfloat16(sc * (v[i] * trellis::kCodeUnit));
  }
}

using GemvFn = void (*)(GemvArgs);
using DecodeFn = void (*)(DecodeArgs);
static_assert(trellis::kMaxBits == 5, "trellis kernels are instantiated for K = 1..5");

template <int NT, int R>
GemvFn gemv_fn(int k) {
  switch (k) {
    case 1: return trellis_gemv_kernel<1, NT, R>;
    case 2: return trellis_gemv_kernel<2, NT, R>;
    case 3: return trellis_gemv_kernel<3, NT, R>;
    case 4: return trellis_gemv_kernel<4, NT, R>;
    default: return trellis_gemv_kernel<5, NT, R>;
  }
}
DecodeFn decode_fn(int k) {
  switch (k) {
    case 1: return trellis_to_bf16_kernel<1>;
    case 2: return trellis_to_bf16_kernel<2>;
    case 3: return trellis_to_bf16_kernel<3>;
    case 4: return trellis_to_bf16_kernel<4>;
    default: return trellis_to_bf16_kernel<5>;
  }
}

// Rows per block for one token: 4, or UPG_CUDA_TRELLIS_ROWS (1, 2, 4 or 8; for measurements).
int single_token_rows() {
  static const int r = [] {
    const char* e = std::getenv("UPG_CUDA_TRELLIS_ROWS");
    const int v = e ? std::atoi(e) : 4;
    return v == 1 || v == 2 || v == 8 ? v : 4;
  }();
  return r;
}

}  // namespace

void launch_trellis_gemv(const DeviceMatrix::Impl& m, const float* x, int64_t n, float* y, bool accumulate,
                         void* stream) {
  GemvArgs a;
  a.w = m.w.as<const uint32_t>();
  a.scales = m.scales.as<const __half>();
  a.rows = m.rows, a.cols = m.cols, a.pitch = m.pitch, a.ng = (m.cols + m.group - 1) / m.group;
  a.L = m.state_bits, a.group = static_cast<int>(m.group);
  a.accumulate = accumulate;
  a.gshift = (m.group & (m.group - 1)) == 0 ? __builtin_ctzll(static_cast<unsigned long long>(m.group)) : -1;
  a.vec = m.cols % 4 == 0 && reinterpret_cast<uintptr_t>(x) % 16 == 0;
  // Warps per block: one per 256-column step, at most kWarps.
  const int warps = static_cast<int>(std::clamp<int64_t>((m.cols + 255) / 256, 1, kWarps));
  for (int64_t t0 = 0; t0 < n;) {
    const int64_t left = n - t0;
    // (tokens per pass, rows per block): more rows share each x load when there are few tokens.
    const int nt = left == 1 ? 1 : left <= 2 ? 2 : left <= 4 ? 4 : 8;
    const int R = nt == 1 ? single_token_rows() : nt <= 4 ? 2 : 1;
    const GemvFn fn = nt == 1   ? (R == 1   ? gemv_fn<1, 1>(m.bits)
                                   : R == 2 ? gemv_fn<1, 2>(m.bits)
                                   : R == 8 ? gemv_fn<1, 8>(m.bits)
                                            : gemv_fn<1, 4>(m.bits))
                      : nt == 2 ? gemv_fn<2, 2>(m.bits)
                      : nt == 4 ? gemv_fn<4, 2>(m.bits)
                                : gemv_fn<8, 1>(m.bits);
    a.x = x + t0 * m.cols;
    a.y = y + t0 * m.rows;
    a.n = static_cast<int>(std::min<int64_t>(nt, left));
    const unsigned blocks = static_cast<unsigned>((m.rows + R - 1) / R);
    fn<<<blocks, warps * 32, 0, as_stream(stream)>>>(a);
    UPG_CUDA_LAUNCHED("trellis_gemv_kernel");
    t0 += a.n;
  }
}

void launch_trellis_to_bf16(const DeviceMatrix::Impl& m, int64_t r0, int64_t r1, void* out, int64_t ld, void* stream) {
  DecodeArgs a;
  a.w = m.w.as<const uint32_t>();
  a.scales = m.scales.as<const __half>();
  a.out = static_cast<__nv_bfloat16*>(out);
  a.r0 = r0, a.cols = m.cols, a.pitch = m.pitch, a.ng = (m.cols + m.group - 1) / m.group, a.ld = ld;
  a.L = m.state_bits, a.group = static_cast<int>(m.group);
  const dim3 grid(static_cast<unsigned>(r1 - r0), static_cast<unsigned>((m.cols + 8 * 256 - 1) / (8 * 256)));
  decode_fn(m.bits)<<<grid, 256, 0, as_stream(stream)>>>(a);
  UPG_CUDA_LAUNCHED("trellis_to_bf16_kernel");
}

}  // namespace upg::cuda
