// The AVX2 step shared by the trellis kernels built with baseline flags (trellis_kernels.cpp's fp32
// chunks, trellis_i16_avx2.cpp): from one 8-byte broadcast of a row's bit stream, the hash
// h = kCodeMul s + kCodeAdd of the 8 states whose stream starts there (kernels/trellis_code.h; the
// code is the byte sum of h - 510), and that byte sum. 8 weights are K whole bytes and K <= 5, so the
// 8 states lie in the 8 loaded bytes: an in-lane byte shuffle gives each 32-bit lane the 4 bytes from
// its state's first byte (big-endian), a variable left shift drops the bits before the state, a right
// shift by 32 - L keeps its L bits. Internal linkage (an anonymous namespace), as trellis_states_avx512.h.
#pragma once
#include <immintrin.h>

#include <cstdint>

#include "kernels/cpu/trellis_kernels.h"
#include "kernels/trellis_code.h"

namespace upg::kernels {
namespace {

struct TrellisStates8 {
  __m256i vctrl, vshl, mul, add;
  __m128i vshr;
  explicit TrellisStates8(const TrellisView& v) {
    alignas(32) uint8_t ctrl[32];
    alignas(32) int32_t shl[8];
    static_assert(((7 * trellis::kMaxBits) >> 3) + 3 < 8, "chunk of 8: its bytes must lie in the 8 loaded");
    for (int i = 0; i < 8; ++i) {
      const int o = (i * v.k) >> 3;
      for (int b = 0; b < 4; ++b) ctrl[4 * i + b] = static_cast<uint8_t>(o + 3 - b);  // lane 1: its own copy
      shl[i] = (i * v.k) & 7;
    }
    vctrl = _mm256_load_si256(reinterpret_cast<const __m256i*>(ctrl));
    vshl = _mm256_load_si256(reinterpret_cast<const __m256i*>(shl));
    vshr = _mm_cvtsi32_si128(32 - v.l);
    mul = _mm256_set1_epi32(static_cast<int>(trellis::kCodeMul));
    add = _mm256_set1_epi32(static_cast<int>(trellis::kCodeAdd));
  }
  // h of the 8 states whose stream starts at src (8 readable bytes).
  __m256i hashes(const uint8_t* src) const {
    const __m256i b = _mm256_broadcastsi128_si256(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(src)));
    const __m256i s = _mm256_srl_epi32(_mm256_sllv_epi32(_mm256_shuffle_epi8(b, vctrl), vshl), vshr);
    return _mm256_add_epi32(_mm256_mullo_epi32(s, mul), add);
  }
  // The byte sums of those hashes (the codes' integers + 510), int32.
  __m256i byte_sums(const uint8_t* src) const {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(hashes(src), _mm256_set1_epi8(1)), _mm256_set1_epi16(1));
  }
};

}  // namespace
}  // namespace upg::kernels
