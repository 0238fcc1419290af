// AVX-512 chunk decoder of the trellis codec (trellis_kernels_avx512.h).
#include "kernels/cpu/trellis_kernels_avx512.h"

#include <immintrin.h>

#include <cstring>

#include "base/half.h"
#include "kernels/cpu/trellis_states_avx512.h"
#include "kernels/trellis_code.h"

namespace upg::kernels {

namespace {

// GCC 12's AVX-512 intrinsic headers trip -Wmaybe-uninitialized (their _mm512_undefined_*
// placeholders) where several chunk decodes are inlined into one loop; silence it in this file only.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

// code * 128 of 16 weights, as floats.
struct Chunk16 {
  TrellisStates16 st;
  explicit Chunk16(const TrellisView& v) : st(v) {}
  // code * 128 of the 16 states whose stream starts at src (16 readable bytes), as floats.
  __m512 codes(const uint8_t* src) const {
    const __m512i x = st.hashes(src);
    const __m512i sum = _mm512_madd_epi16(_mm512_maddubs_epi16(x, _mm512_set1_epi8(1)), _mm512_set1_epi16(1));
    return _mm512_cvtepi32_ps(_mm512_sub_epi32(sum, _mm512_set1_epi32(510)));
  }
};

inline float hsum8(__m256 v) {  // the reduction of tile_gemm.cpp's micro kernel, instruction for instruction
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

template <int R, int NT>
int64_t chains(const TrellisView& v, int64_t r, const float* sc, const float* x, int64_t ldx, int64_t tile,
               float* sums, float* acc_out) {
  const Chunk16 ch(v);
  const uint8_t* row[R];
  for (int i = 0; i < R; ++i) row[i] = v.q + (r + i) * v.row_bytes;
  __m256 acc[R][NT];
  int64_t j = 0;
  for (int64_t c0 = 0; c0 < v.cols; c0 += tile) {
    const int64_t end = c0 + tile < v.cols ? c0 + tile : v.cols;
    for (int i = 0; i < R; ++i)
      for (int t = 0; t < NT; ++t) acc[i][t] = _mm256_setzero_ps();
    for (j = c0; j + 16 <= end && (j * v.k) / 8 + 16 <= v.row_bytes; j += 16) {
      __m256 xlo[NT], xhi[NT];
      for (int t = 0; t < NT; ++t) {
        xlo[t] = _mm256_loadu_ps(x + t * ldx + j);
        xhi[t] = _mm256_loadu_ps(x + t * ldx + j + 8);
      }
      // R rows side by side are R streams the hardware prefetcher may not follow: prefetch each
      // row 1 KiB ahead once per cache line.
      if ((((j * v.k) / 8) & 63) < 2 * v.k)
        for (int i = 0; i < R; ++i) _mm_prefetch(reinterpret_cast<const char*>(row[i] + (j * v.k) / 8 + 1024), _MM_HINT_T0);
      for (int i = 0; i < R; ++i) {
        const float* s = sc + i * v.ngroups;
        const __m512 scale =
            _mm512_mask_blend_ps(0xFF00, _mm512_set1_ps(s[j / v.group]), _mm512_set1_ps(s[(j + 8) / v.group]));
        const __m512 w = _mm512_mul_ps(ch.codes(row[i] + (j * v.k) / 8), scale);
        const __m256 wlo = _mm512_castps512_ps256(w), whi = _mm512_extractf32x8_ps(w, 1);
        for (int t = 0; t < NT; ++t) acc[i][t] = _mm256_fmadd_ps(xlo[t], wlo, acc[i][t]);
        for (int t = 0; t < NT; ++t) acc[i][t] = _mm256_fmadd_ps(xhi[t], whi, acc[i][t]);
      }
    }
    if (j < end) break;  // a 16-byte load would pass the row's end: the caller goes on from j
    for (int i = 0; i < R; ++i)
      for (int t = 0; t < NT; ++t) sums[i * NT + t] += hsum8(acc[i][t]);
  }
  for (int i = 0; i < R; ++i)
    for (int t = 0; t < NT; ++t) _mm256_store_ps(acc_out + (i * NT + t) * 8, acc[i][t]);
  return j;
}

}  // namespace

int64_t trellis_chains_avx512(const TrellisView& v, int64_t r, int nr, const float* sc, const float* x, int64_t ldx,
                              int nt, int64_t tile, float* sums, float* acc) {
  switch (nr * 8 + nt) {
    case 1 * 8 + 1: return chains<1, 1>(v, r, sc, x, ldx, tile, sums, acc);
    case 2 * 8 + 1: return chains<2, 1>(v, r, sc, x, ldx, tile, sums, acc);
    case 3 * 8 + 1: return chains<3, 1>(v, r, sc, x, ldx, tile, sums, acc);
    case 4 * 8 + 1: return chains<4, 1>(v, r, sc, x, ldx, tile, sums, acc);
    case 2 * 8 + 2: return chains<2, 2>(v, r, sc, x, ldx, tile, sums, acc);
    case 1 * 8 + 2: return chains<1, 2>(v, r, sc, x, ldx, tile, sums, acc);
    case 1 * 8 + 3: return chains<1, 3>(v, r, sc, x, ldx, tile, sums, acc);
    default: return chains<1, 4>(v, r, sc, x, ldx, tile, sums, acc);
  }
}

int64_t trellis_decode_chunks_avx512(const TrellisView& v, int64_t r, int64_t j, int64_t end, float* out) {
  const Chunk16 ch(v);
  const uint8_t* row = v.q + r * v.row_bytes;
  const uint8_t* sc = v.scales + 2 * r * v.ngroups;
  const int64_t start = j;
  for (; j + 16 <= end && (j * v.k) / 8 + 16 <= v.row_bytes; j += 16) {
    uint16_t h0, h1;  // positions j .. j+7 and j+8 .. j+15 each lie in one group (G % 8 == 0)
    std::memcpy(&h0, sc + 2 * (j / v.group), 2);
    std::memcpy(&h1, sc + 2 * ((j + 8) / v.group), 2);
    const __m512 scale = _mm512_mask_blend_ps(0xFF00, _mm512_set1_ps(f16_to_f32(h0) * trellis::kCodeUnit),
                                              _mm512_set1_ps(f16_to_f32(h1) * trellis::kCodeUnit));
    _mm512_storeu_ps(out + (j - start), _mm512_mul_ps(ch.codes(row + (j * v.k) / 8), scale));
  }
  return j;
}

}  // namespace upg::kernels
