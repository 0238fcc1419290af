// The AVX-512 step shared by the trellis kernels (trellis_kernels_avx512.cpp, trellis_i16_avx512vnni.cpp):
// from one 16-byte broadcast of a row's bit stream, the hash h = kCodeMul s + kCodeAdd of the 16
// states whose stream starts there (kernels/trellis_code.h; the code is the byte sum of h - 510).
// Since 16 K bits is a whole number of bytes and K <= 5, the 16 states lie in the 16 loaded bytes:
// one in-lane byte shuffle gives each 32-bit lane the 4 bytes from its state's first byte
// (big-endian), a variable left shift drops the bits before the state, a right shift by 32 - L
// keeps its L bits. Internal linkage (an anonymous namespace): each including file is compiled with
// its own AVX-512 flags, so no inline function may be shared between them.
#pragma once
#include <immintrin.h>

#include <cstdint>

#include "kernels/cpu/trellis_kernels.h"
#include "kernels/trellis_code.h"

namespace upg::kernels {
namespace {

struct TrellisStates16 {
  __m512i vctrl, vshl, mul, add;
  __m128i vshr;
  explicit TrellisStates16(const TrellisView& v) {
    alignas(64) uint8_t ctrl[64];
    alignas(64) int32_t shl[16];
    static_assert(((15 * trellis::kMaxBits) >> 3) + 3 < 16, "chunk of 16: its bytes must lie in the 16 loaded");
    for (int i = 0; i < 16; ++i) {
      const int o = (i * v.k) >> 3;  // o + 3 < 16 (the assert): inside each 128-bit lane's copy
      for (int b = 0; b < 4; ++b) ctrl[4 * (i % 4) + 16 * (i / 4) + b] = static_cast<uint8_t>(o + 3 - b);
      shl[i] = (i * v.k) & 7;
    }
    vctrl = _mm512_load_si512(ctrl);
    vshl = _mm512_load_si512(shl);
    vshr = _mm_cvtsi32_si128(32 - v.l);
    mul = _mm512_set1_epi32(static_cast<int>(trellis::kCodeMul));
    add = _mm512_set1_epi32(static_cast<int>(trellis::kCodeAdd));
  }
  // h of the 16 states whose stream starts at src (16 readable bytes).
  __m512i hashes(const uint8_t* src) const {
    const __m512i b = _mm512_broadcast_i32x4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src)));
    const __m512i s = _mm512_srl_epi32(_mm512_sllv_epi32(_mm512_shuffle_epi8(b, vctrl), vshl), vshr);
    return _mm512_add_epi32(_mm512_mullo_epi32(s, mul), add);
  }
};

}  // namespace
}  // namespace upg::kernels
