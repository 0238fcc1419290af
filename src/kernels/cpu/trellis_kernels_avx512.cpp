// AVX-512 chunk decoder of the trellis codec (trellis_kernels_avx512.h).
#include "kernels/cpu/trellis_kernels_avx512.h"

#include <immintrin.h>

#include <cstring>

#include "base/half.h"
#include "kernels/trellis_code.h"

namespace upg::kernels {

namespace {

struct Chunk16 {
  __m512i vctrl, vshl, mul, add;
  __m128i vshr;
  explicit Chunk16(const TrellisView& v) {
    alignas(64) uint8_t ctrl[64];
    alignas(64) int32_t shl[16];
    for (int i = 0; i < 16; ++i) {
      const int o = (i * v.k) >> 3;  // <= 7, so o + 3 < 16: inside each 128-bit lane's copy
      for (int b = 0; b < 4; ++b) ctrl[4 * (i % 4) + 16 * (i / 4) + b] = static_cast<uint8_t>(o + 3 - b);
      shl[i] = (i * v.k) & 7;
    }
    vctrl = _mm512_load_si512(ctrl);
    vshl = _mm512_load_si512(shl);
    vshr = _mm_cvtsi32_si128(32 - v.l);
    mul = _mm512_set1_epi32(static_cast<int>(trellis::kCodeMul));
    add = _mm512_set1_epi32(static_cast<int>(trellis::kCodeAdd));
  }
  // code * 128 of the 16 states whose stream starts at src (16 readable bytes), as floats.
  __m512 codes(const uint8_t* src) const {
    const __m512i b = _mm512_broadcast_i32x4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src)));
    __m512i s = _mm512_srl_epi32(_mm512_sllv_epi32(_mm512_shuffle_epi8(b, vctrl), vshl), vshr);
    const __m512i x = _mm512_add_epi32(_mm512_mullo_epi32(s, mul), add);
    const __m512i sum = _mm512_madd_epi16(_mm512_maddubs_epi16(x, _mm512_set1_epi8(1)), _mm512_set1_epi16(1));
    return _mm512_cvtepi32_ps(_mm512_sub_epi32(sum, _mm512_set1_epi32(510)));
  }
};

template <int NT>
int64_t rows_dot(const TrellisView& v, int64_t r, const float* sc, const float* x, int64_t ldx, float* acc_out) {
  const Chunk16 ch(v);
  const uint8_t* row = v.q + r * v.row_bytes;
  __m512 acc[NT];
  for (int t = 0; t < NT; ++t) acc[t] = _mm512_setzero_ps();
  int64_t j = 0;
  for (; j + 16 <= v.cols && (j * v.k) / 8 + 16 <= v.row_bytes; j += 16) {
    const __m512 scale = _mm512_mask_blend_ps(0xFF00, _mm512_set1_ps(sc[j / v.group]), _mm512_set1_ps(sc[(j + 8) / v.group]));
    const __m512 w = _mm512_mul_ps(ch.codes(row + (j * v.k) / 8), scale);
    for (int t = 0; t < NT; ++t) acc[t] = _mm512_fmadd_ps(w, _mm512_loadu_ps(x + t * ldx + j), acc[t]);
  }
  for (int t = 0; t < NT; ++t) acc_out[t] = _mm512_reduce_add_ps(acc[t]);
  return j;
}

}  // namespace

int64_t trellis_rows_dot_avx512(const TrellisView& v, int64_t r, const float* sc, const float* x, int64_t ldx, int nt,
                                float* acc) {
  switch (nt) {
    case 1: return rows_dot<1>(v, r, sc, x, ldx, acc);
    case 2: return rows_dot<2>(v, r, sc, x, ldx, acc);
    case 3: return rows_dot<3>(v, r, sc, x, ldx, acc);
    default: return rows_dot<4>(v, r, sc, x, ldx, acc);
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
