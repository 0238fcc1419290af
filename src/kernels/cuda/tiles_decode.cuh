// Device-side decoding of the "tiles" layout (gemv_layout.h), shared by the skinny GEMM (gemv_mma.cu)
// and the tile-to-bf16 decoder of the prefill GEMM (gemm_dequant.cu): the lane's tile loads, the
// level-pair table lookups and the A registers of one k-step, and the bf16 MMA.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cstdlib>
#include <type_traits>

#include "base/error.h"
#include "kernels/cuda/gemv_layout.h"

namespace upg::cuda {

__device__ __forceinline__ void mma_bf16(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ uint32_t lds32(uint32_t addr) {
  uint32_t v;
  asm volatile("ld.shared.u32 %0, [%1];\n" : "=r"(v) : "r"(addr));
  return v;
}

// Byte offset, in the replicated table, of lane's copy of entry number "bits [bit, bit + NB) of the
// lane stream": ((field << 5) | lane) * 4. `bit` is a compile-time constant after unrolling.
template <int NW, int NB>
__device__ __forceinline__ uint32_t field_offset(const uint32_t (&w)[NW], int bit, uint32_t lane4) {
  const int lo = bit >> 5, off = bit & 31;
  uint32_t v;
  if (off + NB <= 32) v = off >= 7 ? (w[lo] >> (off - 7)) : (w[lo] << (7 - off));
  else v = __funnelshift_r(w[lo], w[lo + 1 < NW ? lo + 1 : lo], off - 7);
  return (v & (((1u << NB) - 1u) << 7)) | lane4;
}

// The four A registers of k-step j.
template <int DEC, int BITS, int U>
__device__ __forceinline__ void decode_kstep(const uint32_t (&w)[4 * U], int j, uint32_t lut, uint32_t lane4,
                                             uint32_t (&a)[4]) {
  if constexpr (DEC == static_cast<int>(Dec::Codebook)) {
    if constexpr (BITS <= 4) {
#pragma unroll
      for (int r = 0; r < 4; ++r) a[r] = lds32(lut + field_offset<4 * U, 2 * BITS>(w, (8 * j + 2 * r) * BITS, lane4));
    } else {
#pragma unroll
      for (int r = 0; r < 4; ++r) {
        const uint32_t lo = lds32(lut + field_offset<4 * U, BITS>(w, (8 * j + 2 * r) * BITS, lane4));
        const uint32_t hi = lds32(lut + field_offset<4 * U, BITS>(w, (8 * j + 2 * r + 1) * BITS, lane4));
        a[r] = __byte_perm(lo, hi, 0x5410);
      }
    }
  } else if constexpr (DEC == static_cast<int>(Dec::Int8)) {
#pragma unroll
    for (int r = 0; r < 4; ++r) {
      const uint32_t word = w[2 * j + (r >> 1)];
      const int sh = 16 * (r & 1);
      const float lo = static_cast<float>(static_cast<int8_t>((word >> sh) & 0xff));
      const float hi = static_cast<float>(static_cast<int8_t>((word >> (sh + 8)) & 0xff));
      const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
      a[r] = *reinterpret_cast<const uint32_t*>(&v);
    }
  } else {
#pragma unroll
    for (int r = 0; r < 4; ++r) a[r] = w[4 * j + r];
  }
}

// Warps per block for a product over S column slices: a divisor of S near 8 (at most max_w), so no
// warp idles; S itself when S <= 8; else min(8, max_w).
inline int warps_dividing(int64_t S, int max_w) {
  if (S <= max_w && S <= 8) return static_cast<int>(S);
  int best = 0;
  for (int w = 4; w <= max_w; ++w)
    if (S % w == 0 && (best == 0 || std::abs(w - 8) < std::abs(best - 8))) best = w;
  return best ? best : std::min(8, max_w);
}

template <int U>
__device__ __forceinline__ void load_tile(const uint4* __restrict__ p, uint32_t (&w)[4 * U]) {
#pragma unroll
  for (int i = 0; i < U; ++i) {
    const uint4 v = __ldcs(p + i * 32);
    w[4 * i] = v.x, w[4 * i + 1] = v.y, w[4 * i + 2] = v.z, w[4 * i + 3] = v.w;
  }
}

template <int DEC, int BITS>
__host__ __device__ constexpr int units() {
  return DEC == static_cast<int>(Dec::Codebook) ? BITS : DEC == static_cast<int>(Dec::Int8) ? 8 : 16;
}
template <int DEC, int BITS>
__host__ __device__ constexpr int lut_words() {
  return DEC != static_cast<int>(Dec::Codebook) ? 1 : (BITS <= 4 ? (1 << (2 * BITS)) : (1 << BITS)) * 32;
}

// Calls f(dec, bits, fold, scale_f32), each a std::integral_constant, with the kernel parameters of m's
// layout (the one list of instantiated layouts: dense bf16; int8 with fold 1 or 4 and f16 or f32
// scales; codebook 2-6 bits with fold 1 or 4), and returns what f returns.
template <class Fn>
auto dispatch_tiles(const DeviceMatrix::Impl& m, Fn&& f) {
  using I = std::integral_constant<int, 0>;
  auto go = [&](auto dec, auto bits) {
    using D = std::integral_constant<int, decltype(dec)::value>;
    using B = std::integral_constant<int, decltype(bits)::value>;
    if constexpr (D::value == static_cast<int>(Dec::Bf16)) {
      return f(D{}, B{}, I{}, std::false_type{});
    } else if constexpr (D::value == static_cast<int>(Dec::Int8)) {
      if (m.scale_f32)
        return m.fold == 4 ? f(D{}, B{}, std::integral_constant<int, 4>{}, std::true_type{})
                           : f(D{}, B{}, std::integral_constant<int, 1>{}, std::true_type{});
      return m.fold == 4 ? f(D{}, B{}, std::integral_constant<int, 4>{}, std::false_type{})
                         : f(D{}, B{}, std::integral_constant<int, 1>{}, std::false_type{});
    } else {
      return m.fold == 4 ? f(D{}, B{}, std::integral_constant<int, 4>{}, std::false_type{})
                         : f(D{}, B{}, std::integral_constant<int, 1>{}, std::false_type{});
    }
  };
  using CB = std::integral_constant<int, static_cast<int>(Dec::Codebook)>;
  switch (m.dec) {
    case Dec::Bf16: return go(std::integral_constant<int, static_cast<int>(Dec::Bf16)>{}, I{});
    case Dec::Int8: return go(std::integral_constant<int, static_cast<int>(Dec::Int8)>{}, I{});
    case Dec::Codebook:
      switch (m.bits) {
        case 2: return go(CB{}, std::integral_constant<int, 2>{});
        case 3: return go(CB{}, std::integral_constant<int, 3>{});
        case 4: return go(CB{}, std::integral_constant<int, 4>{});
        case 5: return go(CB{}, std::integral_constant<int, 5>{});
        case 6: return go(CB{}, std::integral_constant<int, 6>{});
      }
      break;
    case Dec::Trellis: break;  // its own kernels (trellis_gemv.cu)
  }
  throw Error(str_cat("tiles: no kernel for layout ", m.layout));
}

}  // namespace upg::cuda
