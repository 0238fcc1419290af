// AVX-512 chunk decoder of the trellis codec (trellis_kernels_avx512.h).
#include "kernels/cpu/trellis_kernels_avx512.h"

#include <immintrin.h>

#include <cstring>

#include "base/half.h"
#include "codecs/trellis/trellis_code.h"

namespace upg::kernels {

int64_t trellis_decode_chunks_avx512(const TrellisView& v, int64_t r, int64_t j, int64_t end, float* out) {
  alignas(64) uint8_t ctrl[64];
  alignas(64) int32_t shl[16];
  for (int i = 0; i < 16; ++i) {
    const int o = (i * v.k) >> 3;  // <= 7, so o + 3 < 16: inside each 128-bit lane's copy
    for (int b = 0; b < 4; ++b) ctrl[4 * (i % 4) + 16 * (i / 4) + b] = static_cast<uint8_t>(o + 3 - b);
    shl[i] = (i * v.k) & 7;
  }
  const __m512i vctrl = _mm512_load_si512(ctrl), vshl = _mm512_load_si512(shl);
  const __m128i vshr = _mm_cvtsi32_si128(32 - v.l);
  const __m512i mul = _mm512_set1_epi32(static_cast<int>(trellis::kCodeMul));
  const __m512i add = _mm512_set1_epi32(static_cast<int>(trellis::kCodeAdd));
  const uint8_t* row = v.q + r * v.row_bytes;
  const uint8_t* sc = v.scales + 2 * r * v.ngroups;
  const int64_t start = j;
  for (; j + 16 <= end && (j * v.k) / 8 + 16 <= v.row_bytes; j += 16) {
    const __m512i b = _mm512_broadcast_i32x4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + (j * v.k) / 8)));
    __m512i s = _mm512_shuffle_epi8(b, vctrl);
    s = _mm512_srl_epi32(_mm512_sllv_epi32(s, vshl), vshr);
    const __m512i x = _mm512_add_epi32(_mm512_mullo_epi32(s, mul), add);
    const __m512i sum = _mm512_madd_epi16(_mm512_maddubs_epi16(x, _mm512_set1_epi8(1)), _mm512_set1_epi16(1));
    const __m512 c = _mm512_cvtepi32_ps(_mm512_sub_epi32(sum, _mm512_set1_epi32(510)));
    uint16_t h0, h1;  // positions j .. j+7 and j+8 .. j+15 each lie in one group (G % 8 == 0)
    std::memcpy(&h0, sc + 2 * (j / v.group), 2);
    std::memcpy(&h1, sc + 2 * ((j + 8) / v.group), 2);
    const __m512 scale = _mm512_mask_blend_ps(0xFF00, _mm512_set1_ps(f16_to_f32(h0) * trellis::kCodeUnit),
                                              _mm512_set1_ps(f16_to_f32(h1) * trellis::kCodeUnit));
    _mm512_storeu_ps(out + (j - start), _mm512_mul_ps(c, scale));
  }
  return j;
}

}  // namespace upg::kernels
