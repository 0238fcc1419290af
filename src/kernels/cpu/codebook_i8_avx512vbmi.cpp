// AVX-512 VNNI kernels of the codebook path in codebook_i8.h for k = 5, 6, with AVX-512 VBMI for the
// code unpack and the 32- or 64-entry table lookup (the kernels: codebook_i8_avx512vnni_kernels.h;
// integers and fp32 order: codebook_i8.h). Compiled with AVX-512 VNNI + VBMI flags
// (cmake/UpgSimdFlags.cmake): everything here has internal linkage apart from the header's function.
#include <immintrin.h>

#include "kernels/cpu/codebook_i8_avx512vnni.h"
#include "kernels/cpu/codebook_i8_avx512vnni_kernels.h"

namespace upg::kernels {

namespace {

// k = 5, 6, codes in natural column order: a block of 32 codes is 4K bytes, 8 codes per K bytes.
//   1. row A's block in the low 256 bits, row B's in the high ones (32-byte loads, or masked to 4K
//      bytes for the matrix's last block);
//   2. vpermb: qword j (8 codes) = bytes K (j % 4) .. K (j % 4) + 7 of its row's block;
//   3. vpmultishiftqb: byte i of a qword = its bits K i .. K i + 7 (code i in the low K bits);
//   4. one vpternlogd: the low K bits, plus the table select (row B: + 32 for K = 5, + 64 for K = 6);
//   5. the lookup: K = 5, one vpermb in [A's 32 levels | B's 32 levels]; K = 6, one vpermt2b in A's
//      and B's 64 levels.
template <int K>
struct LevelsVbmi {
  static_assert(K == 5 || K == 6, "k = 5 or 6");
  static constexpr int kBlockBytes = 4 * K;
  static constexpr int kStride = 64;
  static constexpr int kTableRegs = K == 5 ? 1 : 2;
  static constexpr bool kTailLoads = true;  // 32-byte loads of 20- or 24-byte blocks
  struct Table {
    __m512i a, b;  // K = 5: a = [A 0..31 | B 0..31]; K = 6: a = A, b = B
  };
  __m512i gather, shift, low_hi, mask;
  LevelsVbmi() {
    alignas(64) uint8_t g[64], s[64], m[64], h[64];
    for (int j = 0; j < 8; ++j)
      for (int b = 0; b < 8; ++b) {
        const int i = 8 * j + b;
        g[i] = static_cast<uint8_t>((j >= 4 ? 32 : 0) + K * (j % 4) + b);
        s[i] = static_cast<uint8_t>(K * b);
        m[i] = static_cast<uint8_t>((1 << K) - 1);
        h[i] = static_cast<uint8_t>(j >= 4 ? (1 << K) : 0);
      }
    gather = _mm512_load_si512(g);
    shift = _mm512_load_si512(s);
    mask = _mm512_load_si512(m);
    low_hi = _mm512_load_si512(h);
  }
  Table table(const int8_t* la, const int8_t* lb, bool flip) const {
    const __m512i f = flip ? _mm512_set1_epi8(static_cast<char>(0x80)) : _mm512_setzero_si512();
    Table t;
    if constexpr (K == 5) {
      t.a = _mm512_xor_si512(_mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(la))),
                                                _mm256_loadu_si256(reinterpret_cast<const __m256i*>(lb)), 1),
                             f);
      t.b = t.a;
    } else {
      t.a = _mm512_xor_si512(_mm512_loadu_si512(la), f);
      t.b = _mm512_xor_si512(_mm512_loadu_si512(lb), f);
    }
    return t;
  }
  __m512i levels(const Table& t, const uint8_t* pa, const uint8_t* pb, bool tail) const {
    constexpr __mmask32 kBytes = (1u << kBlockBytes) - 1;
    const __m256i la = tail ? _mm256_maskz_loadu_epi8(kBytes, pa) : _mm256_loadu_si256(reinterpret_cast<const __m256i*>(pa));
    const __m256i lb = tail ? _mm256_maskz_loadu_epi8(kBytes, pb) : _mm256_loadu_si256(reinterpret_cast<const __m256i*>(pb));
    const __m512i raw = _mm512_inserti64x4(_mm512_castsi256_si512(la), lb, 1);
    const __m512i codes = _mm512_multishift_epi64_epi8(shift, _mm512_permutexvar_epi8(gather, raw));
    const __m512i idx = _mm512_ternarylogic_epi32(codes, mask, low_hi, 0xEA);  // (codes & mask) | low_hi
    if constexpr (K == 5) return _mm512_permutexvar_epi8(idx, t.a);
    else return _mm512_permutex2var_epi8(t.a, idx, t.b);
  }
};

}  // namespace

void codebook_i8_vbmi_units(const CodebookView& v, const int8_t* levels, const float* alpha, const ActI8Pointers& x,
                            int64_t tile_tokens, float* y, uint8_t* scratch, int64_t unit_begin, int64_t unit_end) {
  const Scratch S = carve(scratch, v.cols, v.ngroups);
  if (v.k == 5) return run(v, LevelsVbmi<5>(), levels, alpha, x, tile_tokens, y, S, unit_begin, unit_end);
  run(v, LevelsVbmi<6>(), levels, alpha, x, tile_tokens, y, S, unit_begin, unit_end);
}

}  // namespace upg::kernels
