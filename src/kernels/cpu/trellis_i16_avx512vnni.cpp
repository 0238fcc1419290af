// AVX-512 VNNI kernel of the trellis int16-activation path (trellis_i16.h, trellis_i16_avx512vnni.h).
// Internal linkage only, and no inline function of the standard library or the project (one compiled
// here with AVX-512 could be the copy the linker keeps for baseline code): __builtin_fmaf, memcpy.
#include "kernels/cpu/trellis_i16_avx512vnni.h"

#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "kernels/cpu/trellis_states_avx512.h"
#include "kernels/trellis_code.h"

namespace upg::kernels {

namespace {

#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

// The codes' integers + 510 (P, the byte sums of the hashes: vpdpbusd against ones) of 32 weights as
// 32 int16, in the lane order of trellis_i16.h (vpackssdw of the two halves' 16 int32).
struct CodeInts32 {
  TrellisStates16 st;
  __m512i ones;
  explicit CodeInts32(const TrellisView& v) : st(v), ones(_mm512_set1_epi8(1)) {}
  __m512i half(const uint8_t* src) const { return _mm512_dpbusd_epi32(_mm512_setzero_si512(), st.hashes(src), ones); }
  __m512i operator()(const uint8_t* lo, const uint8_t* hi) const { return _mm512_packs_epi32(half(lo), half(hi)); }
};

// Row r's code integers of columns [b0, b1) (multiples of 32): (b1 - b0) / 32 vectors of 16 int32
// lanes, each two int16.
void decode_row(const TrellisView& v, const CodeInts32& ci, int64_t r, int64_t b0, int64_t b1, int32_t* out) {
  const uint8_t* row = v.q + r * v.row_bytes;
  const int64_t step_bytes = 4 * v.k;  // 32 weights x K bits
  int64_t j = b0;
  for (; j < b1 && ((j + 16) * v.k) / 8 + 16 <= v.row_bytes; j += 32) {
    const int64_t byte = (j * v.k) / 8;
    if ((byte & 63) < step_bytes) _mm_prefetch(reinterpret_cast<const char*>(row + byte + 1024), _MM_HINT_T0);
    _mm512_store_si512(out + (j - b0) / 2, ci(row + byte, row + byte + 2 * v.k));
  }
  if (j < b1) {  // the row's last steps: their 16-byte loads would pass its end; read a padded copy
    alignas(64) uint8_t pad[96] = {};  // the tail is under 16 + 2K bytes, and loads reach 16 past its last half step
    const int64_t first = (j * v.k) / 8, n = v.row_bytes - first;
    std::memcpy(pad, row + first, static_cast<size_t>(n));
    for (; j < b1; j += 32) {
      const uint8_t* p = pad + (j * v.k) / 8 - first;
      _mm512_store_si512(out + (j - b0) / 2, ci(p, p + 2 * v.k));
    }
  }
}

inline float hsum16(__m512 f) {  // lanes l + 8, then + 4, + 2, + 1 (trellis_i16.h)
  __m256 a = _mm256_add_ps(_mm512_castps512_ps256(f), _mm512_extractf32x8_ps(f, 1));
  __m128 b = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
  b = _mm_add_ps(b, _mm_movehl_ps(b, b));
  b = _mm_add_ss(b, _mm_movehdup_ps(b));
  return _mm_cvtss_f32(b);
}

// Per (row i, token t) of the current rows: the 16 fp32 lanes F and the scalar K (trellis_i16.h),
// carried from one column block to the next.
struct Sums {
  float* F;  // [R][n][16]
  float* K;  // [R][n]
  int64_t n;
};

// Chunks [c0, c1) (of x.chunk columns; blocks of kTrellisI16Block hold whole chunks) of tokens
// t0 .. t0 + NT - 1 for R rows whose code integers are P (int32 pairs, stride `ld`, columns c0 * chunk
// and the next at P[0]).
template <int R, int NT>
void pass(const TrellisView& v, const TrellisI16Act& x, const int32_t* P, int64_t ld, const float* s, int64_t c0,
          int64_t c1, int64_t t0, Sums& sums) {
  const int32_t* A[NT];
  for (int t = 0; t < NT; ++t) A[t] = x.pair + (t0 + t) * (v.cols / 2);
  for (int64_t c = c0; c < c1; ++c) {
    __m512i C[R][NT];  // the only accumulators in registers (R x NT <= 16); F and K fold in memory
    for (int i = 0; i < R; ++i)
      for (int t = 0; t < NT; ++t) C[i][t] = _mm512_setzero_si512();
    for (int64_t q = 0; q < x.chunk / 32; ++q) {
      const int64_t j = x.chunk * c + 32 * q;
      __m512i a[NT];
      for (int t = 0; t < NT; ++t) a[t] = _mm512_loadu_si512(A[t] + j / 2);
      for (int i = 0; i < R; ++i) {
        const __m512i p = _mm512_load_si512(P + i * ld + (j - x.chunk * c0) / 2);
        for (int t = 0; t < NT; ++t) C[i][t] = _mm512_dpwssd_epi32(C[i][t], p, a[t]);
      }
    }
    const int64_t g = x.chunk * c / v.group;
    for (int t = 0; t < NT; ++t) {
      const float d = x.d[(t0 + t) * x.nch + c], qs = static_cast<float>(x.qsum[(t0 + t) * x.nch + c]);
      for (int i = 0; i < R; ++i) {
        const float m = s[i * v.ngroups + g] * d;
        float* F = sums.F + (i * sums.n + t0 + t) * 16;
        _mm512_store_ps(F, _mm512_fmadd_ps(_mm512_cvtepi32_ps(C[i][t]), _mm512_set1_ps(m), _mm512_load_ps(F)));
        float& K = sums.K[i * sums.n + t0 + t];
        K = __builtin_fmaf(qs, m, K);
      }
    }
  }
}

template <int R>
void block(const TrellisView& v, const TrellisI16Act& x, const int32_t* P, int64_t ld, const float* s, int64_t c0,
           int64_t c1, Sums& sums) {
  int64_t t0 = 0;
  for (; t0 + 4 <= x.n; t0 += 4) pass<R, 4>(v, x, P, ld, s, c0, c1, t0, sums);
  switch (x.n - t0) {
    case 3: return pass<R, 3>(v, x, P, ld, s, c0, c1, t0, sums);
    case 2: return pass<R, 2>(v, x, P, ld, s, c0, c1, t0, sums);
    case 1: return pass<R, 1>(v, x, P, ld, s, c0, c1, t0, sums);
    default: return;
  }
}

}  // namespace

void trellis_i16_vnni_rows(const TrellisView& v, const TrellisI16Act& x, const float* sc, float* y, int64_t r, int nr,
                           int32_t* buf) {
  const CodeInts32 ci(v);
  float* base = reinterpret_cast<float*>((reinterpret_cast<uintptr_t>(buf) + 63) & ~uintptr_t{63});
  Sums all{base, base + kTrellisI16Rows * 16 * x.n, x.n};
  int32_t* P = reinterpret_cast<int32_t*>(base + kTrellisI16Rows * 17 * x.n + 16);
  P = reinterpret_cast<int32_t*>((reinterpret_cast<uintptr_t>(P) + 63) & ~uintptr_t{63});
  for (int64_t i = 0; i < nr * x.n * 16; ++i) all.F[i] = 0.0f;
  for (int64_t i = 0; i < nr * x.n; ++i) all.K[i] = 0.0f;
  // Column blocks of kTrellisI16Block: the rows' pair sums of a block stay in L1, the tokens'
  // activations of the block in L2, whatever the token count.
  for (int64_t b0 = 0; b0 < v.cols; b0 += kTrellisI16Block) {
    const int64_t b1 = b0 + kTrellisI16Block < v.cols ? b0 + kTrellisI16Block : v.cols;
    constexpr int64_t ld = kTrellisI16Block / 2;
    for (int i = 0; i < nr; ++i) decode_row(v, ci, r + i, b0, b1, P + i * ld);
    switch (nr) {
      case 1: block<1>(v, x, P, ld, sc, b0 / x.chunk, b1 / x.chunk, all); break;
      case 2: block<2>(v, x, P, ld, sc, b0 / x.chunk, b1 / x.chunk, all); break;
      case 3: block<3>(v, x, P, ld, sc, b0 / x.chunk, b1 / x.chunk, all); break;
      default: block<4>(v, x, P, ld, sc, b0 / x.chunk, b1 / x.chunk, all); break;
    }
  }
  for (int i = 0; i < nr; ++i)
    for (int64_t t = 0; t < x.n; ++t) {
      const __m512 F = _mm512_load_ps(all.F + (i * x.n + t) * 16);
      y[t * v.rows + r + i] = __builtin_fmaf(-510.0f, all.K[i * x.n + t], hsum16(F)) * trellis::kCodeUnit;
    }
}

}  // namespace upg::kernels
