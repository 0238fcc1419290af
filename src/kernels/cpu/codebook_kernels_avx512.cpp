// AVX-512 decode of the codebook one-token kernel; see codebook_kernels_avx512.h. Compiled with AVX-512 flags: to keep
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
// AVX-512 one-token decode (K <= 6, group % 16 == 0): 16 codes per step. K <= 4: the two 32-bit words
// holding codes 0-7 and 8-15 broadcast to the two 256-bit halves, variable shift, mask; K = 5, 6:
// 16 bytes broadcast to the four 128-bit blocks and an in-block byte shuffle first. Lookup: one
// permutexvar (K <= 4, 16 levels), permutex2var (K = 5, 32 levels), two of them + a blend (K = 6).
template <int K>
struct Row512 {
  static constexpr int kRegs = K <= 4 ? 1 : (1 << K) / 16;
  __m512i shuf, shift, mask;
  alignas(64) float lv[K <= 4 ? 16 : (1 << K)] = {};
  __m512 t[kRegs];
  Row512() = default;
  explicit Row512(const float* L) { init(L); }
  void init(const float* L) {
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

inline float hsum8(__m256 v) {  // the reduction of tile_gemm.cpp's micro kernel, instruction for instruction
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

constexpr int64_t kPrefetch = 1024;

template <int K, int R>
int64_t chains(const CodebookView& v, const float* const* levels, const uint8_t* const* row, const float* sc,
               const float* x, int64_t tile, float* sums, float* acc_out) {
  __m256 acc[R];
  Row512<K> rw[R];  // the rows' tables (the unpacking constants are the same for every row)
  for (int i = 0; i < R; ++i) rw[i].init(levels[i]);
  int64_t j = 0;
  for (int64_t c0 = 0; c0 < v.cols; c0 += tile) {
    const int64_t end = c0 + tile < v.cols ? c0 + tile : v.cols;
    for (int i = 0; i < R; ++i) acc[i] = _mm256_setzero_ps();
    for (j = c0; j + 16 <= end;) {
      const int64_t g = j / v.group, gend = (g + 1) * v.group < end ? (g + 1) * v.group : end;
      for (int i = 0; i < R; ++i) rw[i].set_scale(sc[i * v.ngroups + g]);
      for (; j + 16 <= gend; j += 16) {  // the R chains interleaved
        const __m256 xlo = _mm256_loadu_ps(x + j), xhi = _mm256_loadu_ps(x + j + 8);
        // R rows side by side are R streams the hardware prefetcher may not follow: prefetch each
        // row kPrefetch bytes ahead once per cache line.
        if (((j / 8 * K) & 63) < 2 * K)
          for (int i = 0; i < R; ++i) _mm_prefetch(reinterpret_cast<const char*>(row[i] + j / 8 * K + kPrefetch), _MM_HINT_T0);
        for (int i = 0; i < R; ++i) {
          const __m512 w = rw[i].lookup(rw[0].unpack(row[i] + j / 8 * K));
          acc[i] = _mm256_fmadd_ps(xlo, _mm512_castps512_ps256(w), acc[i]);
          acc[i] = _mm256_fmadd_ps(xhi, _mm512_extractf32x8_ps(w, 1), acc[i]);
        }
      }
      if (j < gend) break;  // fewer than 16 left (the row's end)
    }
    if (j < end) break;  // the caller goes on from j
    for (int i = 0; i < R; ++i) sums[i] += hsum8(acc[i]);
  }
  for (int i = 0; i < R; ++i) _mm256_store_ps(acc_out + 8 * i, acc[i]);
  return j;
}

template <int K>
int64_t chains_k(const CodebookView& v, int nr, const float* const* levels, const uint8_t* const* row, const float* sc,
                 const float* x, int64_t tile, float* sums, float* acc) {
  switch (nr) {
    case 1: return chains<K, 1>(v, levels, row, sc, x, tile, sums, acc);
    case 2: return chains<K, 2>(v, levels, row, sc, x, tile, sums, acc);
    case 3: return chains<K, 3>(v, levels, row, sc, x, tile, sums, acc);
    default: return chains<K, 4>(v, levels, row, sc, x, tile, sums, acc);
  }
}
}  // namespace

int64_t codebook_chains_avx512(const CodebookView& v, int nr, const float* const* levels, const uint8_t* const* row,
                               const float* sc, const float* x, int64_t tile, float* sums, float* acc) {
  switch (v.k) {
    case 1: return chains_k<1>(v, nr, levels, row, sc, x, tile, sums, acc);
    case 2: return chains_k<2>(v, nr, levels, row, sc, x, tile, sums, acc);
    case 3: return chains_k<3>(v, nr, levels, row, sc, x, tile, sums, acc);
    case 4: return chains_k<4>(v, nr, levels, row, sc, x, tile, sums, acc);
    case 5: return chains_k<5>(v, nr, levels, row, sc, x, tile, sums, acc);
    default: return chains_k<6>(v, nr, levels, row, sc, x, tile, sums, acc);
  }
}

}  // namespace upg::kernels
