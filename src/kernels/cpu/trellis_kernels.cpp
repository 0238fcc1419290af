// Trellis CPU kernels. Contracts and the technique: see trellis_kernels.h.
#include "kernels/cpu/trellis_kernels.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "base/cpu_features.h"
#include "base/half.h"
#include "base/thread_pool.h"
#include "kernels/trellis_code.h"
#include "kernels/cpu/tile_gemm.h"
#include "kernels/cpu/trellis_kernels_avx512.h"

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>
#define UPG_TRELLIS_AVX2 1
#endif

namespace upg::kernels {

namespace {

inline float row_scale(const TrellisView& v, int64_t r, int64_t j) {
  uint16_t h;
  std::memcpy(&h, v.scales + 2 * (r * v.ngroups + j / v.group), 2);
  return f16_to_f32(h);
}

// The L-bit state at stream bit `bit` of a row (bytes past the row's end read as 0).
inline uint32_t state_at(const uint8_t* row, int64_t row_bytes, int64_t bit, int L) {
  const int64_t b = bit >> 3;
  uint32_t w = 0;
  if (b + 4 <= row_bytes) {
    w = (uint32_t{row[b]} << 24) | (uint32_t{row[b + 1]} << 16) | (uint32_t{row[b + 2]} << 8) | row[b + 3];
  } else {
    for (int i = 0; i < 4; ++i) w = (w << 8) | (b + i < row_bytes ? row[b + i] : 0u);
  }
  return (w << (bit & 7)) >> (32 - L);
}

#ifdef UPG_TRELLIS_AVX2
// 8 weights (code * scale) from the chunk whose first state starts at byte `src` (bit offset 0);
// needs 8 readable bytes. The shuffle control and shifts depend only on K and L.
struct Chunk8 {
  __m256i vctrl, vshl;
  __m128i vshr;
  explicit Chunk8(const TrellisView& v) {
    alignas(32) uint8_t ctrl[32];
    alignas(32) int32_t shl[8];
    for (int i = 0; i < 8; ++i) {
      const int o = (i * v.k) >> 3;
      for (int b = 0; b < 4; ++b) ctrl[4 * i + b] = static_cast<uint8_t>(o + 3 - b);
      shl[i] = (i * v.k) & 7;
    }
    // Lane 1 indexes its own copy of the 16 bytes: the same control values.
    vctrl = _mm256_load_si256(reinterpret_cast<const __m256i*>(ctrl));
    vshl = _mm256_load_si256(reinterpret_cast<const __m256i*>(shl));
    vshr = _mm_cvtsi32_si128(32 - v.l);
  }
  __m256 weights(const uint8_t* src, float scale) const {
    const __m256i b = _mm256_broadcastsi128_si256(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(src)));
    __m256i s = _mm256_shuffle_epi8(b, vctrl);
    s = _mm256_srl_epi32(_mm256_sllv_epi32(s, vshl), vshr);
    const __m256i x = _mm256_add_epi32(_mm256_mullo_epi32(s, _mm256_set1_epi32(static_cast<int>(trellis::kCodeMul))),
                                       _mm256_set1_epi32(static_cast<int>(trellis::kCodeAdd)));
    const __m256i sum = _mm256_madd_epi16(_mm256_maddubs_epi16(x, _mm256_set1_epi8(1)), _mm256_set1_epi16(1));
    const __m256 c = _mm256_cvtepi32_ps(_mm256_sub_epi32(sum, _mm256_set1_epi32(510)));
    return _mm256_mul_ps(c, _mm256_set1_ps(scale * trellis::kCodeUnit));
  }
};
#endif

}  // namespace

void trellis_decode_segment_scalar(const TrellisView& v, int64_t r, int64_t c0, int64_t m, float* out) {
  const uint8_t* row = v.q + r * v.row_bytes;
  for (int64_t j = c0; j < c0 + m; ++j)
    out[j - c0] = row_scale(v, r, j) * trellis::code(state_at(row, v.row_bytes, j * v.k, v.l));
}

void trellis_decode_segment(const TrellisView& v, int64_t r, int64_t c0, int64_t m, float* out) {
  int64_t j = c0;
  const int64_t end = c0 + m;
#ifdef UPG_TRELLIS_AVX2
  if (c0 % 8 == 0) {
    const uint8_t* row = v.q + r * v.row_bytes;
    if (simd_level() >= SimdLevel::Avx512) j = trellis_decode_chunks_avx512(v, r, j, end, out + (j - c0));
    const Chunk8 ch(v);
    for (; j + 8 <= end && (j * v.k) / 8 + 8 <= v.row_bytes; j += 8)
      _mm256_storeu_ps(out + (j - c0), ch.weights(row + (j * v.k) / 8, row_scale(v, r, j)));
  }
#endif
  if (j < end) trellis_decode_segment_scalar(v, r, j, end - j, out + (j - c0));
}

namespace {

// Row r's group scales times the code's unit (1/128), fp32.
void unit_scales(const TrellisView& v, int64_t r, float* out) {
  const uint8_t* s = v.scales + 2 * r * v.ngroups;
  int64_t g = 0;
#ifdef UPG_TRELLIS_AVX2
  for (; g + 8 <= v.ngroups; g += 8)
    _mm256_storeu_ps(out + g, _mm256_mul_ps(_mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(s + 2 * g))),
                                            _mm256_set1_ps(trellis::kCodeUnit)));
#endif
  for (; g < v.ngroups; ++g) {
    uint16_t h;
    std::memcpy(&h, s + 2 * g, 2);
    out[g] = f16_to_f32(h) * trellis::kCodeUnit;
  }
}

// y[t][r] for t < nt tokens (x rows t, y rows t of width rows): one decode of the row, nt dots.
void rows_dot(const TrellisView& v, int64_t r, const float* sc, const float* x, int nt, float* y, float* tail) {
  float acc[4] = {0, 0, 0, 0};
  int64_t j = 0;
#ifdef UPG_TRELLIS_AVX2
  if (simd_level() >= SimdLevel::Avx512) {
    j = trellis_rows_dot_avx512(v, r, sc, x, v.cols, nt, acc);
  } else {
    const Chunk8 ch(v);
    const uint8_t* row = v.q + r * v.row_bytes;
    __m256 va[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    for (; j + 8 <= v.cols && (j * v.k) / 8 + 8 <= v.row_bytes; j += 8) {
      // sc already holds scale / 128 (exact): weights() multiplies by 1/128 again, so pass sc * 128.
      const __m256 w = ch.weights(row + (j * v.k) / 8, sc[j / v.group] * 128.0f);
      for (int t = 0; t < nt; ++t) va[t] = _mm256_fmadd_ps(w, _mm256_loadu_ps(x + t * v.cols + j), va[t]);
    }
    for (int t = 0; t < nt; ++t) {
      alignas(32) float l[8];
      _mm256_store_ps(l, va[t]);
      acc[t] = ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]));
    }
  }
#endif
  if (j < v.cols) {
    trellis_decode_segment_scalar(v, r, j, v.cols - j, tail);
    for (int t = 0; t < nt; ++t)
      for (int64_t i = j; i < v.cols; ++i) acc[t] += tail[i - j] * x[t * v.cols + i];
  }
  for (int t = 0; t < nt; ++t) y[t * v.rows + r] = acc[t];
}

}  // namespace

void trellis_matmul(const TrellisView& v, const float* x, int64_t n, float* y) {
  if (n <= kFusedTokens) {  // decode and small batches: one decode of each row, n dot products
    parallel_for_dynamic(v.rows, 16, [&](int64_t r0, int64_t r1) {
      thread_local std::vector<float> sc, tail;
      sc.resize(static_cast<size_t>(v.ngroups));
      tail.resize(static_cast<size_t>(v.cols));  // the scalar tail (at most ~150 weights)
      for (int64_t r = r0; r < r1; ++r) {
        unit_scales(v, r, sc.data());
        for (int64_t t0 = 0; t0 < n; t0 += 4)
          rows_dot(v, r, sc.data(), x + t0 * v.cols, static_cast<int>(std::min<int64_t>(4, n - t0)), y + t0 * v.rows, tail.data());
      }
    });
    return;
  }
  tiled_matmul(v.rows, v.cols, x, n, y, [&](int64_t r0, int64_t nr, int64_t c0, int64_t kc, float* tile, int64_t ldt) {
    for (int64_t i = 0; i < nr; ++i) trellis_decode_segment(v, r0 + i, c0, kc, tile + i * ldt);
  });
}

}  // namespace upg::kernels
