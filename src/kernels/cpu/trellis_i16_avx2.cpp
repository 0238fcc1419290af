// The AVX2 kernel of the trellis int16-activation path (trellis_i16.h has the arithmetic), for CPUs
// without AVX-512 VNNI: the same lanes in two 8-lane registers (lanes 0-7 and 8-15 of trellis_i16.h),
// vpmaddwd + vpaddd in place of vpdpwssd and vpmaddubsw + vpmaddwd in place of vpdpbusd, so it gives
// the reference's bits too. Baseline flags (AVX2 + FMA).
#include "kernels/cpu/trellis_i16_avx2.h"

#include <immintrin.h>

#include <cmath>
#include <cstring>

#include "kernels/cpu/trellis_states_avx2.h"
#include "kernels/trellis_code.h"

namespace upg::kernels {

namespace {

// 32 weights from the byte of the first: lanes 0-7 (columns 0-7 and 16-23, as int16 pairs) and 8-15
// (8-15 and 24-31), the order trellis_i16.h defines (vpackssdw's, per 128-bit lane).
inline void step32(const TrellisStates8& ci, const uint8_t* p, int k, int32_t* out) {
  const __m256i a = ci.byte_sums(p), b = ci.byte_sums(p + k), c = ci.byte_sums(p + 2 * k), d = ci.byte_sums(p + 3 * k);
  _mm256_store_si256(reinterpret_cast<__m256i*>(out), _mm256_packs_epi32(a, c));
  _mm256_store_si256(reinterpret_cast<__m256i*>(out + 8), _mm256_packs_epi32(b, d));
}

// Row r's code integers of columns [b0, b1) (multiples of 32): 16 int32 per 32 columns.
void decode_row(const TrellisView& v, const TrellisStates8& ci, int64_t r, int64_t b0, int64_t b1, int32_t* out) {
  const uint8_t* row = v.q + r * v.row_bytes;
  const int k = v.k;
  int64_t j = b0;
  for (; j < b1 && ((j + 24) * k) / 8 + 8 <= v.row_bytes; j += 32) {
    const int64_t byte = (j * k) / 8;
    if ((byte & 63) < 4 * k) _mm_prefetch(reinterpret_cast<const char*>(row + byte + 1024), _MM_HINT_T0);
    step32(ci, row + byte, k, out + (j - b0) / 2);
  }
  if (j < b1) {  // the row's last steps: their 8-byte loads would pass its end; read a padded copy
    alignas(32) uint8_t pad[64] = {};  // the tail is under 3K + 8 bytes; loads reach 3K + 8 past a step
    const int64_t first = (j * k) / 8;
    std::memcpy(pad, row + first, static_cast<size_t>(v.row_bytes - first));
    for (; j < b1; j += 32) step32(ci, pad + (j * k) / 8 - first, k, out + (j - b0) / 2);
  }
}

// Chunks [c0, c1) of token t for R rows whose code integers are P (stride ld int32, the block's
// first column at P[0]): C per lane exact in int32, folded into the 16 fp32 lanes F and K.
template <int R>
void pass(const TrellisView& v, const TrellisI16Act& x, const int32_t* P, int64_t ld, const float* s, int64_t c0,
          int64_t c1, int64_t t, float* F, float* K, int64_t n) {
  const int32_t* A = x.pair + t * (v.cols / 2);
  for (int64_t c = c0; c < c1; ++c) {
    __m256i C[R][2];
    for (int i = 0; i < R; ++i) C[i][0] = C[i][1] = _mm256_setzero_si256();
    for (int64_t q = 0; q < x.chunk / 32; ++q) {
      const int64_t j = x.chunk * c + 32 * q;
      const __m256i a0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(A + j / 2));
      const __m256i a1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(A + j / 2 + 8));
      for (int i = 0; i < R; ++i) {
        const int32_t* p = P + i * ld + (j - x.chunk * c0) / 2;
        C[i][0] = _mm256_add_epi32(C[i][0], _mm256_madd_epi16(_mm256_load_si256(reinterpret_cast<const __m256i*>(p)), a0));
        C[i][1] = _mm256_add_epi32(C[i][1], _mm256_madd_epi16(_mm256_load_si256(reinterpret_cast<const __m256i*>(p + 8)), a1));
      }
    }
    const int64_t g = x.chunk * c / v.group;
    const float d = x.d[t * x.nch + c], qs = static_cast<float>(x.qsum[t * x.nch + c]);
    for (int i = 0; i < R; ++i) {
      const float m = s[i * v.ngroups + g] * d;
      float* f = F + (i * n + t) * 16;
      const __m256 vm = _mm256_set1_ps(m);
      _mm256_storeu_ps(f, _mm256_fmadd_ps(_mm256_cvtepi32_ps(C[i][0]), vm, _mm256_loadu_ps(f)));
      _mm256_storeu_ps(f + 8, _mm256_fmadd_ps(_mm256_cvtepi32_ps(C[i][1]), vm, _mm256_loadu_ps(f + 8)));
      float& k = K[i * n + t];
      k = std::fma(qs, m, k);
    }
  }
}

inline float hsum16(const float* f) {  // lanes l + 8, then + 4, + 2, + 1 (trellis_i16.h)
  const __m256 a = _mm256_add_ps(_mm256_loadu_ps(f), _mm256_loadu_ps(f + 8));
  __m128 b = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
  b = _mm_add_ps(b, _mm_movehl_ps(b, b));
  b = _mm_add_ss(b, _mm_movehdup_ps(b));
  return _mm_cvtss_f32(b);
}

}  // namespace

void trellis_i16_avx2_rows(const TrellisView& v, const TrellisI16Act& x, const float* sc, float* y, int64_t r, int nr,
                           int32_t* buf) {
  const TrellisStates8 ci(v);
  const int64_t n = x.n;
  float* F = reinterpret_cast<float*>(buf);  // [nr][n][16]
  float* K = F + kTrellisI16Rows * 16 * n;   // [nr][n]
  int32_t* P = reinterpret_cast<int32_t*>(
      (reinterpret_cast<uintptr_t>(K + kTrellisI16Rows * n) + 63) & ~uintptr_t{63});  // [nr][block / 2]
  for (int64_t i = 0; i < nr * n * 16; ++i) F[i] = 0.0f;
  for (int64_t i = 0; i < nr * n; ++i) K[i] = 0.0f;
  constexpr int64_t ld = kTrellisI16Block / 2;
  for (int64_t b0 = 0; b0 < v.cols; b0 += kTrellisI16Block) {
    const int64_t b1 = b0 + kTrellisI16Block < v.cols ? b0 + kTrellisI16Block : v.cols;
    for (int i = 0; i < nr; ++i) decode_row(v, ci, r + i, b0, b1, P + i * ld);
    for (int64_t t = 0; t < n; ++t) switch (nr) {
        case 1: pass<1>(v, x, P, ld, sc, b0 / x.chunk, b1 / x.chunk, t, F, K, n); break;
        case 2: pass<2>(v, x, P, ld, sc, b0 / x.chunk, b1 / x.chunk, t, F, K, n); break;
        case 3: pass<3>(v, x, P, ld, sc, b0 / x.chunk, b1 / x.chunk, t, F, K, n); break;
        default: pass<4>(v, x, P, ld, sc, b0 / x.chunk, b1 / x.chunk, t, F, K, n); break;
      }
  }
  for (int i = 0; i < nr; ++i)
    for (int64_t t = 0; t < n; ++t)
      y[t * v.rows + r + i] = std::fma(-510.0f, K[i * n + t], hsum16(F + (i * n + t) * 16)) * trellis::kCodeUnit;
}

}  // namespace upg::kernels
