// Trellis CPU kernels. Contracts and the technique: see trellis_kernels.h.
#include "kernels/cpu/trellis_kernels.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "base/cpu_features.h"
#include "base/half.h"
#include "codecs/trellis/trellis_code.h"
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
// 8 weights from the chunk whose first state starts at byte `src` (bit offset 0); needs 8 readable bytes.
inline __m256 chunk8(const uint8_t* src, __m256i ctrl, __m256i shl, __m128i shr, float scale) {
  const __m256i b = _mm256_broadcastsi128_si256(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(src)));
  __m256i s = _mm256_shuffle_epi8(b, ctrl);
  s = _mm256_srl_epi32(_mm256_sllv_epi32(s, shl), shr);
  const __m256i x = _mm256_add_epi32(_mm256_mullo_epi32(s, _mm256_set1_epi32(static_cast<int>(trellis::kCodeMul))),
                                     _mm256_set1_epi32(static_cast<int>(trellis::kCodeAdd)));
  const __m256i sum = _mm256_madd_epi16(_mm256_maddubs_epi16(x, _mm256_set1_epi8(1)), _mm256_set1_epi16(1));
  const __m256 c = _mm256_cvtepi32_ps(_mm256_sub_epi32(sum, _mm256_set1_epi32(510)));
  return _mm256_mul_ps(c, _mm256_set1_ps(scale * trellis::kCodeUnit));
}
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
    alignas(32) uint8_t ctrl[32];
    alignas(32) int32_t shl[8];
    for (int i = 0; i < 8; ++i) {
      const int o = (i * v.k) >> 3;
      for (int b = 0; b < 4; ++b) ctrl[4 * i + b] = static_cast<uint8_t>(o + 3 - b);
      shl[i] = (i * v.k) & 7;
    }
    // Lane 1 indexes its own copy of the 16 bytes: the same control values.
    const __m256i vctrl = _mm256_load_si256(reinterpret_cast<const __m256i*>(ctrl));
    const __m256i vshl = _mm256_load_si256(reinterpret_cast<const __m256i*>(shl));
    const __m128i vshr = _mm_cvtsi32_si128(32 - v.l);
    for (; j + 8 <= end && (j * v.k) / 8 + 8 <= v.row_bytes; j += 8)
      _mm256_storeu_ps(out + (j - c0), chunk8(row + (j * v.k) / 8, vctrl, vshl, vshr, row_scale(v, r, j)));
  }
#endif
  if (j < end) trellis_decode_segment_scalar(v, r, j, end - j, out + (j - c0));
}

void trellis_matmul(const TrellisView& v, const float* x, int64_t n, float* y) {
  tiled_matmul(v.rows, v.cols, x, n, y, [&](int64_t r0, int64_t nr, int64_t c0, int64_t kc, float* tile, int64_t ldt) {
    for (int64_t i = 0; i < nr; ++i) trellis_decode_segment(v, r0 + i, c0, kc, tile + i * ldt);
  });
}

}  // namespace upg::kernels
