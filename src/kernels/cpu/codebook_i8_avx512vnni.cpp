// AVX-512 VNNI kernels of the codebook path in codebook_i8.h for k = 2, 3, 4 (technique:
// codebook_i8_avx512vnni.h; the kernels: codebook_i8_avx512vnni_kernels.h; integers and fp32 order:
// codebook_i8.h). Compiled with AVX-512 VNNI flags: everything here has internal linkage (apart from
// the two functions of the header) and calls no standard-library or project inline function.
#include "kernels/cpu/codebook_i8_avx512vnni.h"

#include <immintrin.h>

#include "kernels/cpu/codebook_i8_avx512vnni_kernels.h"
#include "kernels/cpu/codebook_q8_unpack_avx512.h"

namespace upg::kernels {

namespace {

// k = 2, 3, 4: the codes unpacked by Unpack2 (order pi_k), looked up with one vpshufb in the two
// rows' 16-entry tables (each broadcast to the 128-bit lanes of its half).
template <int K>
struct LevelsShuffle {
  static constexpr int kBlockBytes = 4 * K;
  static constexpr int kStride = 16;
  static constexpr int kTableRegs = 1;
  static constexpr bool kTailLoads = K == 3;  // 16-byte loads of 12-byte blocks
  using Table = __m512i;
  Unpack2<K> up;
  explicit LevelsShuffle(const Q8K3Unpack& k3) : up(k3) {}
  Table table(const int8_t* la, const int8_t* lb, bool flip) const {
    const __m512i t = _mm512_mask_broadcast_i32x4(_mm512_broadcast_i32x4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(la))),
                                                  0xff00, _mm_loadu_si128(reinterpret_cast<const __m128i*>(lb)));
    return flip ? _mm512_xor_si512(t, _mm512_set1_epi8(static_cast<char>(0x80))) : t;
  }
  __m512i levels(const Table& t, const uint8_t* pa, const uint8_t* pb, bool tail) const {
    return _mm512_shuffle_epi8(t, up(pa, pb, tail));
  }
};

}  // namespace

size_t codebook_i8_vnni_scratch_bytes(int64_t cols, int64_t ngroups) {
  const int64_t nch = cols / kChunk;
  return static_cast<size_t>(nch * kUnit * kChunk + up64(nch * kUnit * 4) + (ngroups + 15) / 16 * 16 * kUnit * 4);
}

void codebook_i8_vnni_units(const CodebookView& v, const Q8K3Unpack& k3, const int8_t* levels, const float* alpha,
                            const ActI8Pointers& x, int64_t tile_tokens, float* y, uint8_t* scratch,
                            int64_t unit_begin, int64_t unit_end) {
  const Scratch S = carve(scratch, v.cols, v.ngroups);
  switch (v.k) {
    case 2: return run(v, LevelsShuffle<2>(k3), levels, alpha, x, tile_tokens, y, S, unit_begin, unit_end);
    case 3: return run(v, LevelsShuffle<3>(k3), levels, alpha, x, tile_tokens, y, S, unit_begin, unit_end);
    default: return run(v, LevelsShuffle<4>(k3), levels, alpha, x, tile_tokens, y, S, unit_begin, unit_end);
  }
}

}  // namespace upg::kernels
