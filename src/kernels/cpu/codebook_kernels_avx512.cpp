// AVX-512 codebook row kernel; see codebook_kernels_avx512.h. Compiled with AVX-512 flags: to keep
// AVX-512 instructions out of code the rest of the program may share (inline functions and
// templates the linker merges across files), everything here has internal linkage and uses no
// standard-library templates.
#include "kernels/cpu/codebook_kernels_avx512.h"

#include <immintrin.h>

namespace upg::kernels {

namespace {
// GCC 12's AVX-512 intrinsic headers trip -Wmaybe-uninitialized (their _mm512_undefined_*
// placeholders) wherever permutexvar / masked loads are inlined; silence it in this file only.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
// AVX-512 matvec row (K <= 6, group % 16 == 0): 16 codes per step. K <= 4: the two 32-bit words
// holding codes 0-7 and 8-15 broadcast to the two 256-bit halves, variable shift, mask; K = 5, 6:
// 16 bytes broadcast to the four 128-bit blocks and an in-block byte shuffle first. Lookup: one
// permutexvar (K <= 4, 16 levels), permutex2var (K = 5, 32 levels), two of them + a blend (K = 6).
template <int K>
struct Row512 {
  static constexpr int kRegs = K <= 4 ? 1 : (1 << K) / 16;
  __m512i shuf, shift, mask;
  alignas(64) float lv[K <= 4 ? 16 : (1 << K)] = {};
  __m512 t[kRegs];
  explicit Row512(const float* L) {
    alignas(64) int8_t b[64];
    alignas(64) int32_t sh[16];
    for (int i = 0; i < 16; ++i) {
      const int bit = i * K, lane = i * 4;
      b[lane] = static_cast<int8_t>(bit >> 3);
      b[lane + 1] = static_cast<int8_t>((bit >> 3) + 1);
      b[lane + 2] = b[lane + 3] = static_cast<int8_t>(0x80);
      sh[i] = K <= 4 ? (i % 8) * K : bit & 7;
    }
    shuf = _mm512_load_si512(b);
    shift = _mm512_load_si512(sh);
    mask = _mm512_set1_epi32((1 << K) - 1);
    __builtin_memcpy(lv, L, sizeof(float) << K);
  }
  void set_scale(float scale) {
    const __m512 s = _mm512_set1_ps(scale);
    for (int i = 0; i < kRegs; ++i) t[i] = _mm512_mul_ps(_mm512_load_ps(lv + 16 * i), s);
  }
  __m512i unpack(const uint8_t* p) const {
    __m512i raw;
    if constexpr (K <= 4) {
      int32_t w0, w1;
      __builtin_memcpy(&w0, p, 4);
      __builtin_memcpy(&w1, p + K, 4);
      raw = _mm512_inserti64x4(_mm512_zextsi256_si512(_mm256_set1_epi32(w0)), _mm256_set1_epi32(w1), 1);
    } else {
      raw = _mm512_shuffle_epi8(
          _mm512_broadcast_i32x4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))), shuf);
    }
    return _mm512_and_si512(_mm512_srlv_epi32(raw, shift), mask);
  }
  __m512 lookup(__m512i c) const {
    if constexpr (K <= 4) return _mm512_permutexvar_ps(c, t[0]);
    else if constexpr (K == 5) return _mm512_permutex2var_ps(t[0], c, t[1]);
    else
      return _mm512_mask_blend_ps(_mm512_test_epi32_mask(c, _mm512_set1_epi32(32)),
                                  _mm512_permutex2var_ps(t[0], c, t[1]), _mm512_permutex2var_ps(t[2], c, t[3]));
  }
};

template <int K>
float row_dot(const CodebookView& v, const float* levels, const uint8_t* row, const float* sc, const float* x) {
  Row512<K> rw(levels);
  __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
  for (int64_t g = 0; g < v.ngroups; ++g) {
    const int64_t c0 = g * v.group, m = (v.group < v.cols - c0 ? v.group : v.cols - c0);
    rw.set_scale(sc[g]);
    const uint8_t* p = row + c0 / 8 * K;
    const float* xg = x + c0;
    int64_t j = 0;
    for (; j + 32 <= m; j += 32, p += 4 * K) {
      acc0 = _mm512_fmadd_ps(rw.lookup(rw.unpack(p)), _mm512_loadu_ps(xg + j), acc0);
      acc1 = _mm512_fmadd_ps(rw.lookup(rw.unpack(p + 2 * K)), _mm512_loadu_ps(xg + j + 16), acc1);
    }
    for (; j < m; j += 16, p += 2 * K) {  // m % 16 != 0 only in a row's last group: zero x past the end
      const __mmask16 k = m - j >= 16 ? __mmask16(0xffff) : static_cast<__mmask16>((1u << (m - j)) - 1);
      acc0 = _mm512_fmadd_ps(rw.lookup(rw.unpack(p)), _mm512_maskz_loadu_ps(k, xg + j), acc0);
    }
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
}
}  // namespace

float codebook_row_dot_avx512(const CodebookView& v, const float* levels, const uint8_t* row, const float* sc,
                              const float* x) {
  switch (v.k) {
    case 1: return row_dot<1>(v, levels, row, sc, x);
    case 2: return row_dot<2>(v, levels, row, sc, x);
    case 3: return row_dot<3>(v, levels, row, sc, x);
    case 4: return row_dot<4>(v, levels, row, sc, x);
    case 5: return row_dot<5>(v, levels, row, sc, x);
    default: return row_dot<6>(v, levels, row, sc, x);
  }
}

}  // namespace upg::kernels
