// What the AVX-512 VNNI kernel (codebook_q8_avx512vnni.cpp) and the AMX kernel (codebook_i8_amx.cpp)
// share: the unpack of two blocks of 32 k-bit codes (k = 2, 3, 4) to 64 bytes, block A in the low
// 256 bits and block B in the high 256 bits, each in the order pi_k of codebook_q8.h (the AVX2
// unpack applied to both halves at once), and an f16 scale read from unaligned bytes.
// Include this header only from files compiled with AVX-512 flags: everything in it has internal
// linkage (an anonymous namespace), so no AVX-512 code can be merged into files built for AVX2.
#pragma once
#include <immintrin.h>

#include "kernels/cpu/codebook_q8.h"

// GCC 12's AVX-512 intrinsic headers trip -Wmaybe-uninitialized (their _mm512_undefined_*
// placeholders); silenced in the files that include this header.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

namespace upg::kernels {
namespace {

inline float f16(const uint8_t* p) {
  unsigned short h;
  __builtin_memcpy(&h, p, 2);
  return _cvtsh_ss(h);
}

// The 32 codes of one block of row A (low 256 bits) and of row B (high 256 bits), unpacked to
// bytes in the order pi_K: the AVX2 unpack of codebook_q8.cpp on both halves at once.
template <int K>
struct Unpack2 {
  __m512i sh, mask, shuf, s2;
  __mmask64 sel = 0;
  explicit Unpack2(const Q8K3Unpack& c) {
    mask = _mm512_set1_epi8(static_cast<char>((1 << K) - 1));
    if constexpr (K == 2) sh = _mm512_setr_epi64(0, 2, 4, 6, 0, 2, 4, 6);
    if constexpr (K == 4) sh = _mm512_setr_epi64(0, 0, 4, 4, 0, 0, 4, 4);
    if constexpr (K == 3) {
      const __m256i sf = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(c.shuf));
      const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(c.s1));
      const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(c.s2));
      shuf = _mm512_inserti64x4(_mm512_castsi256_si512(sf), sf, 1);
      sh = _mm512_inserti64x4(_mm512_castsi256_si512(a), a, 1);
      s2 = _mm512_inserti64x4(_mm512_castsi256_si512(b), b, 1);
      uint32_t m = 0;
      for (int i = 0; i < 32; ++i) m |= (c.sel[i] & 0x80u ? 1u : 0u) << i;
      sel = static_cast<__mmask64>(m) | (static_cast<__mmask64>(m) << 32);
    }
  }
  // tail: block B ends the matrix (K = 3 reads 16 bytes of a 12-byte block: load only 12, of both rows).
  __m512i operator()(const uint8_t* pa, const uint8_t* pb, bool tail) const {
    if constexpr (K == 2) {
      long long wa, wb;
      __builtin_memcpy(&wa, pa, 8);
      __builtin_memcpy(&wb, pb, 8);
      const __m512i raw = _mm512_mask_set1_epi64(_mm512_set1_epi64(wa), 0xF0, wb);
      return _mm512_and_si512(_mm512_srlv_epi64(raw, sh), mask);
    } else {
      // (rows A and B are the same last row when the row count is odd: both loads then stop at 12 bytes)
      const __m128i la = K == 3 && tail ? _mm_maskz_loadu_epi8(0x0fff, pa)
                                        : _mm_loadu_si128(reinterpret_cast<const __m128i*>(pa));
      const __m128i lb = K == 3 && tail ? _mm_maskz_loadu_epi8(0x0fff, pb)
                                        : _mm_loadu_si128(reinterpret_cast<const __m128i*>(pb));
      const __m512i raw = _mm512_mask_broadcast_i32x4(_mm512_broadcast_i32x4(la), 0xff00, lb);
      if constexpr (K == 4) return _mm512_and_si512(_mm512_srlv_epi64(raw, sh), mask);
      const __m512i x = _mm512_shuffle_epi8(raw, shuf);
      return _mm512_and_si512(_mm512_mask_blend_epi8(sel, _mm512_srlv_epi32(x, sh), _mm512_srlv_epi32(x, s2)), mask);
    }
  }
};

}  // namespace
}  // namespace upg::kernels
