// Tile GEMM (x * tile^T) and fp32 -> bf16 conversion. Contracts: see tile_gemm.h.
#include "kernels/cpu/tile_gemm.h"

#include <cstring>

#include "base/half.h"

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define UPG_TILE_AVX2 1
#endif

namespace upg::kernels {

namespace {

#ifdef UPG_TILE_AVX2
inline float hsum8(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// MR input rows x NR tile rows over kc columns: MR * NR ymm accumulators (<= 12 + MR + 1 regs).
template <int MR, int NR>
void micro(const float* x, int64_t ldx, const float* t, int64_t ldt, int64_t kc, float* y, int64_t ldy) {
  __m256 acc[MR][NR];
  for (int m = 0; m < MR; ++m)
    for (int r = 0; r < NR; ++r) acc[m][r] = _mm256_setzero_ps();
  int64_t k = 0;
  for (; k + 8 <= kc; k += 8) {
    __m256 xv[MR];
    for (int m = 0; m < MR; ++m) xv[m] = _mm256_loadu_ps(x + m * ldx + k);
    for (int r = 0; r < NR; ++r) {
      const __m256 wv = _mm256_loadu_ps(t + r * ldt + k);
      for (int m = 0; m < MR; ++m) acc[m][r] = _mm256_fmadd_ps(xv[m], wv, acc[m][r]);
    }
  }
  if (k < kc) {  // column tail: masked loads read zeros past kc
    alignas(32) static const int32_t kIdx[8] = {0, 1, 2, 3, 4, 5, 6, 7};
    const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int32_t>(kc - k)),
                                            _mm256_load_si256(reinterpret_cast<const __m256i*>(kIdx)));
    __m256 xv[MR];
    for (int m = 0; m < MR; ++m) xv[m] = _mm256_maskload_ps(x + m * ldx + k, mask);
    for (int r = 0; r < NR; ++r) {
      const __m256 wv = _mm256_maskload_ps(t + r * ldt + k, mask);
      for (int m = 0; m < MR; ++m) acc[m][r] = _mm256_fmadd_ps(xv[m], wv, acc[m][r]);
    }
  }
  for (int m = 0; m < MR; ++m)
    for (int r = 0; r < NR; ++r) y[m * ldy + r] += hsum8(acc[m][r]);
}

using MicroFn = void (*)(const float*, int64_t, const float*, int64_t, int64_t, float*, int64_t);
constexpr MicroFn kMicro[3][4] = {
    {micro<1, 1>, micro<1, 2>, micro<1, 3>, micro<1, 4>},
    {micro<2, 1>, micro<2, 2>, micro<2, 3>, micro<2, 4>},
    {micro<3, 1>, micro<3, 2>, micro<3, 3>, micro<3, 4>},
};
#endif

}  // namespace

void gemm_tile_nt_reference(const float* x, int64_t ldx, int64_t n, const float* t, int64_t ldt,
                            int64_t nr, int64_t kc, float* y, int64_t ldy) {
  for (int64_t m = 0; m < n; ++m)
    for (int64_t r = 0; r < nr; ++r) {
      float s = 0.0f;
      for (int64_t k = 0; k < kc; ++k) s += x[m * ldx + k] * t[r * ldt + k];
      y[m * ldy + r] += s;
    }
}

void gemm_tile_nt(const float* x, int64_t ldx, int64_t n, const float* t, int64_t ldt, int64_t nr,
                  int64_t kc, float* y, int64_t ldy) {
#ifdef UPG_TILE_AVX2
  for (int64_t m = 0; m < n; m += 3) {
    const int mr = static_cast<int>(std::min<int64_t>(3, n - m));
    for (int64_t r = 0; r < nr; r += 4) {
      const int nrr = static_cast<int>(std::min<int64_t>(4, nr - r));
      kMicro[mr - 1][nrr - 1](x + m * ldx, ldx, t + r * ldt, ldt, kc, y + m * ldy + r, ldy);
    }
  }
#else
  gemm_tile_nt_reference(x, ldx, n, t, ldt, nr, kc, y, ldy);
#endif
}

void f32_to_bf16_n(const float* in, uint16_t* out, int64_t n) {
  int64_t i = 0;
#ifdef UPG_TILE_AVX2
  const __m256i lsb = _mm256_set1_epi32(1), bias = _mm256_set1_epi32(0x7fff), quiet = _mm256_set1_epi32(0x40);
  for (; i + 16 <= n; i += 16) {
    __m256i h[2];
    for (int j = 0; j < 2; ++j) {
      const __m256 v = _mm256_loadu_ps(in + i + 8 * j);
      const __m256i u = _mm256_castps_si256(v);
      const __m256i rounded = _mm256_srli_epi32(
          _mm256_add_epi32(u, _mm256_add_epi32(bias, _mm256_and_si256(_mm256_srli_epi32(u, 16), lsb))), 16);
      const __m256i nan = _mm256_or_si256(_mm256_srli_epi32(u, 16), quiet);
      const __m256i is_nan = _mm256_castps_si256(_mm256_cmp_ps(v, v, _CMP_UNORD_Q));
      h[j] = _mm256_blendv_epi8(rounded, nan, is_nan);
    }
    // packus works per 128-bit lane: [a0..3 b0..3 | a4..7 b4..7] -> reorder the 64-bit quarters.
    const __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(h[0], h[1]), 0xD8);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i), packed);
  }
#endif
  for (; i < n; ++i) out[i] = f32_to_bf16(in[i]);
}

}  // namespace upg::kernels
