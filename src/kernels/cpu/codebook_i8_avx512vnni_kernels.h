// The AVX-512 VNNI kernels of codebook_i8_avx512vnni.h as templates over the level unpacker (the
// 64 signed or unsigned level bytes of a row pair's block pair): Unpack2 + vpshufb for k = 2, 3, 4
// (codebook_i8_avx512vnni.cpp), vpermb + vpmultishiftqb for k = 5, 6 (codebook_i8_avx512vbmi.cpp).
// An unpacker U has:
//   kBlockBytes            bytes of 32 codes (4 k)
//   kStride                entries per table block in CodebookI8Tables::v (its stride())
//   kTableRegs             registers per row pair's table (2: the few-token kernel takes 8 rows a pass)
//   kTailLoads             whether a block's plain load reads past it (then the matrix's last block
//                          is loaded with a mask: `tail`)
//   Table table(la, lb, flip)   the table(s) of row A (low 256 bits) and row B (high 256 bits) from
//                          their CodebookI8Tables entries; flip: unsigned levels v + 128
//   levels(t, pa, pb, tail)     64 level bytes: block pa of row A, block pb of row B, in the
//                          column order of ActI8::qp (pi_k for k <= 4, natural for k >= 5)
// Include only from files compiled with AVX-512 VNNI flags: everything here has internal linkage.
#pragma once
#include <immintrin.h>

#include "kernels/cpu/codebook_i8_avx512vnni.h"

#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

namespace upg::kernels {
namespace {

constexpr int64_t kChunk = 64;
constexpr int64_t kUnit = 16;  // rows per unit

struct Scratch {
  int8_t* a;      // [nch][16 rows][64] signed levels (tile kernel)
  int32_t* corr;  // [16][nch] 128 * (sum of row i's levels in chunk c)
  float* s;       // [16][ng16] group scales of the unit's rows (fp32)
};

int64_t up64(int64_t b) { return (b + 63) / 64 * 64; }

Scratch carve(uint8_t* base, int64_t cols, int64_t ngroups) {
  const int64_t nch = cols / kChunk;
  Scratch S;
  S.a = reinterpret_cast<int8_t*>(base);
  base += nch * kUnit * kChunk;
  S.corr = reinterpret_cast<int32_t*>(base);
  base += up64(nch * kUnit * 4);
  S.s = reinterpret_cast<float*>(base);
  return S;
}

inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

// The unit's group scales as fp32, [i][g] (rows past the last repeat it; ng16 = ngroups rounded up to
// 16, zero-padded), and its alphas.
void unit_scales(const CodebookView& v, const float* alpha, int64_t r0, int64_t ng16, float* s, float* av) {
  const int64_t last = v.rows - 1;
  for (int64_t i = 0; i < kUnit; ++i) {
    const int64_t r = min64(r0 + i, last);
    const uint8_t* sc = v.scales + r * v.ngroups * 2;
    for (int64_t g = 0; g < v.ngroups; g += 16) {
      const int64_t left = v.ngroups - g;
      const __mmask16 m = left >= 16 ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << left) - 1);
      _mm512_store_ps(s + i * ng16 + g, _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, sc + 2 * g)));
    }
    av[i] = alpha[r / v.cb_rows];
  }
}

// Lane i = the sum of row i's 8 lanes, where in[p] holds row 2p in lanes 0-7 and row 2p + 1 in 8-15.
inline __m512i row_sums16(const __m512i* in) {
  __m512i w[4];  // w[q], 128-bit lane j: 4 partial sums of row 4q + j
  for (int q = 0; q < 4; ++q) {
    const __m512i a = in[2 * q], b = in[2 * q + 1];
    w[q] = _mm512_add_epi32(_mm512_shuffle_i32x4(a, b, _MM_SHUFFLE(2, 0, 2, 0)),
                            _mm512_shuffle_i32x4(a, b, _MM_SHUFFLE(3, 1, 3, 1)));
  }
  // x0, lane j: 2 partials of row j, 2 of row 4 + j; x1: rows 8 + j, 12 + j.
  const __m512i x0 = _mm512_add_epi32(_mm512_unpacklo_epi64(w[0], w[1]), _mm512_unpackhi_epi64(w[0], w[1]));
  const __m512i x1 = _mm512_add_epi32(_mm512_unpacklo_epi64(w[2], w[3]), _mm512_unpackhi_epi64(w[2], w[3]));
  const __m512 f0 = _mm512_castsi512_ps(x0), f1 = _mm512_castsi512_ps(x1);
  // Lane 4 j + m: row 4 m + j.
  const __m512i y = _mm512_add_epi32(_mm512_castps_si512(_mm512_shuffle_ps(f0, f1, _MM_SHUFFLE(2, 0, 2, 0))),
                                     _mm512_castps_si512(_mm512_shuffle_ps(f0, f1, _MM_SHUFFLE(3, 1, 3, 1))));
  return _mm512_permutexvar_epi32(_mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15), y);
}

// Few tokens: tokens [t0, t0 + NT) of rows rb0 .. rb0 + 2P - 1 (P row pairs: 8, or 4 when NT > 2 so
// that the NT x P int32 sums stay in registers), straight from the codes. s, av: the unit's scales
// and alphas (rows from r0); lanes of the results past 2P are unused.
template <class U, int NT, int P>
void few_tokens(const CodebookView& v, const U& up, const int8_t* levels, const ActI8Pointers& x,
                int64_t r0, int64_t rb0, int64_t t0, const float* s, int64_t ng16, const float* av, float* y) {
  static_assert(P == 4 || P == 8, "4 or 8 row pairs");
  const int64_t nch = v.cols / kChunk, nblk = v.cols / 32, per = v.group / kChunk, last = v.rows - 1;
  const uint8_t* pa[P];
  const uint8_t* pb[P];
  typename U::Table tbl[P];
  bool tail[P];
  for (int p = 0; p < P; ++p) {
    const int64_t ra = min64(rb0 + 2 * p, last), rb = min64(rb0 + 2 * p + 1, last);
    pa[p] = v.q + ra * v.row_bytes;
    pb[p] = v.q + rb * v.row_bytes;
    tbl[p] = up.table(levels + U::kStride * (ra / v.cb_rows), levels + U::kStride * (rb / v.cb_rows), true);  // u = v + 128
    tail[p] = U::kTailLoads && rb == last;
  }
  // The same rows of the next unit (consecutive in memory), a slice per chunk, arrive while these are read.
  const uint8_t* q_end = v.q + v.rows * v.row_bytes;
  const uint8_t* next = v.q + (rb0 + kUnit) * v.row_bytes;
  const int64_t pf_step = (2 * P * v.row_bytes + nch - 1) / nch;
  // Row i's scale of group g is s[i ng16 + g]: one gather per chunk (lanes past 2P read row 0).
  __m512i sidx = _mm512_setzero_si512();
  for (int i = 0; i < 2 * P; ++i)
    sidx = _mm512_mask_set1_epi32(sidx, static_cast<__mmask16>(1u << i), static_cast<int>((rb0 - r0 + i) * ng16));
  int64_t g = 0, in_group = 0;
  __m512 acc[NT];
  for (int t = 0; t < NT; ++t) acc[t] = _mm512_setzero_ps();
  for (int64_t c = 0; c < nch; ++c) {
    for (const uint8_t* pf = next + c * pf_step; pf < next + (c + 1) * pf_step && pf < q_end; pf += 64)
      _mm_prefetch(reinterpret_cast<const char*>(pf), _MM_HINT_T0);
    __m512i ia[NT][8];
    for (int t = 0; t < NT; ++t)
      for (int p = 0; p < 8; ++p) ia[t][p] = _mm512_setzero_si512();
    for (int h = 0; h < 2; ++h) {
      const int64_t b = 2 * c + h;
      __m512i q[NT];
      for (int t = 0; t < NT; ++t)
        q[t] = _mm512_broadcast_i64x4(
            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.qp + (t0 + t) * v.cols + c * kChunk + 32 * h)));
      for (int p = 0; p < P; ++p) {
        const __m512i w = up.levels(tbl[p], pa[p] + b * U::kBlockBytes, pb[p] + b * U::kBlockBytes, tail[p] && b == nblk - 1);
        for (int t = 0; t < NT; ++t) ia[t][p] = _mm512_dpbusd_epi32(ia[t][p], w, q[t]);
      }
    }
    const __m512 sc = _mm512_i32gather_ps(_mm512_add_epi32(sidx, _mm512_set1_epi32(static_cast<int>(g))), s, 4);
    if (++in_group == per) in_group = 0, ++g;
    for (int t = 0; t < NT; ++t) {
      const int64_t o = c * x.ntt * 16 + t0 + t;
      const __m512i C = _mm512_sub_epi32(row_sums16(ia[t]), _mm512_set1_epi32(128 * x.qsum[o]));
      acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(C), _mm512_mul_ps(sc, _mm512_set1_ps(x.d[o])), acc[t]);
    }
  }
  const int64_t rows_here = min64(2 * P, v.rows - rb0);
  const __mmask16 m = static_cast<__mmask16>((1u << rows_here) - 1);
  const __m512 alpha = _mm512_loadu_ps(av + (rb0 - r0));  // av has 32 entries
  for (int t = 0; t < NT; ++t) _mm512_mask_storeu_ps(y + (t0 + t) * v.rows + rb0, m, _mm512_mul_ps(alpha, acc[t]));
}

// Tokens [t0, t0 + nt) (nt <= 4) of the unit at r0.
template <class U>
void few_tokens_unit(const CodebookView& v, const U& up, const int8_t* levels, const ActI8Pointers& x,
                     int64_t r0, int64_t t0, int64_t nt, const float* s, int64_t ng16, const float* av, float* y) {
  if (nt <= 2 && U::kTableRegs == 1) {
    if (nt == 2) few_tokens<U, 2, 8>(v, up, levels, x, r0, r0, t0, s, ng16, av, y);
    else few_tokens<U, 1, 8>(v, up, levels, x, r0, r0, t0, s, ng16, av, y);
    return;
  }
  for (int64_t rb0 = r0; rb0 < r0 + kUnit && rb0 < v.rows; rb0 += 8) {
    if (nt == 4) few_tokens<U, 4, 4>(v, up, levels, x, r0, rb0, t0, s, ng16, av, y);
    else if (nt == 3) few_tokens<U, 3, 4>(v, up, levels, x, r0, rb0, t0, s, ng16, av, y);
    else if (nt == 2) few_tokens<U, 2, 4>(v, up, levels, x, r0, rb0, t0, s, ng16, av, y);
    else few_tokens<U, 1, 4>(v, up, levels, x, r0, rb0, t0, s, ng16, av, y);
  }
}

// 16 vectors -> one: lane j = the sum of in[j]'s 16 lanes.
inline __m512i lane_sums16(const __m512i* in) {
  __m512i pairs[8];  // pairs[p]: in[2p] summed to 8 lanes (0-7), in[2p + 1] to 8 lanes (8-15)
  for (int p = 0; p < 8; ++p) {
    const __m512i a = in[2 * p], b = in[2 * p + 1];
    pairs[p] = _mm512_add_epi32(_mm512_shuffle_i32x4(a, b, _MM_SHUFFLE(1, 0, 1, 0)),
                                _mm512_shuffle_i32x4(a, b, _MM_SHUFFLE(3, 2, 3, 2)));
  }
  return row_sums16(pairs);
}

// Many tokens, step 1: the unit's levels (signed, chunk-major) and 128 * their sum per row and chunk
// (corr[i][c], 16 chunks of a row reduced at once).
template <class U>
void unpack_unit(const CodebookView& v, const U& up, const int8_t* levels, int64_t r0, const Scratch& S) {
  const int64_t nch = v.cols / kChunk, last = v.rows - 1;
  const __m512i ones = _mm512_set1_epi8(1);
  for (int64_t i = 0; i < kUnit; ++i) {
    const int64_t r = min64(r0 + i, last);
    const uint8_t* row = v.q + r * v.row_bytes;
    const typename U::Table tbl = up.table(levels + U::kStride * (r / v.cb_rows), levels + U::kStride * (r / v.cb_rows), false);
    const bool tail = U::kTailLoads && r == last;
    for (int64_t c0 = 0; c0 < nch; c0 += 16) {
      __m512i part[16];
      for (int j = 0; j < 16; ++j) {
        const int64_t c = c0 + j;
        if (c >= nch) {
          part[j] = _mm512_setzero_si512();
          continue;
        }
        const uint8_t* p = row + 2 * c * U::kBlockBytes;
        const __m512i w = up.levels(tbl, p, p + U::kBlockBytes, tail && c == nch - 1);
        _mm512_store_si512(S.a + (c * kUnit + i) * kChunk, w);
        part[j] = _mm512_dpbusd_epi32(_mm512_setzero_si512(), ones, w);
      }
      const int64_t left = nch - c0;
      const __mmask16 m = left >= 16 ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << left) - 1);
      _mm512_mask_storeu_epi32(S.corr + i * nch + c0, m, _mm512_slli_epi32(lane_sums16(part), 7));
    }
  }
}

// A token tile's registers: 16 tokens in 512 bits, or the first 8 in 256 bits (a tile of at most 8
// tokens: half the work where the other half would be padding).
struct Tokens16 {
  using I = __m512i;
  using F = __m512;
  static I zero() { return _mm512_setzero_si512(); }
  static F zerof() { return _mm512_setzero_ps(); }
  static I load(const int8_t* p) { return _mm512_loadu_si512(p); }
  static I flip(I a) { return _mm512_xor_si512(a, _mm512_set1_epi8(static_cast<char>(0x80))); }
  static I dpbusd(I acc, I u, int32_t s4) { return _mm512_dpbusd_epi32(acc, u, _mm512_set1_epi32(s4)); }
  static F loadf(const float* p) { return _mm512_loadu_ps(p); }
  static F fold(I acc, int32_t corr, float s, F d, F accf) {
    const I C = _mm512_sub_epi32(acc, _mm512_set1_epi32(corr));
    return _mm512_fmadd_ps(_mm512_cvtepi32_ps(C), _mm512_mul_ps(_mm512_set1_ps(s), d), accf);
  }
  // y[t0 + l][row] = alpha accf[l] for the tile's tokens l < left.
  static void store(float* y, int64_t rows, int64_t left, float alpha, F accf) {
    const __mmask16 m = left >= 16 ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << left) - 1);
    const __m512i stride = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                              _mm512_set1_epi32(static_cast<int>(rows)));
    _mm512_mask_i32scatter_ps(y, m, stride, _mm512_mul_ps(_mm512_set1_ps(alpha), accf), 4);
  }
};
struct Tokens8 {
  using I = __m256i;
  using F = __m256;
  static I zero() { return _mm256_setzero_si256(); }
  static F zerof() { return _mm256_setzero_ps(); }
  static I load(const int8_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }
  static I flip(I a) { return _mm256_xor_si256(a, _mm256_set1_epi8(static_cast<char>(0x80))); }
  static I dpbusd(I acc, I u, int32_t s4) { return _mm256_dpbusd_epi32(acc, u, _mm256_set1_epi32(s4)); }
  static F loadf(const float* p) { return _mm256_loadu_ps(p); }
  static F fold(I acc, int32_t corr, float s, F d, F accf) {
    const I C = _mm256_sub_epi32(acc, _mm256_set1_epi32(corr));
    return _mm256_fmadd_ps(_mm256_cvtepi32_ps(C), _mm256_mul_ps(_mm256_set1_ps(s), d), accf);
  }
  static void store(float* y, int64_t rows, int64_t left, float alpha, F accf) {
    const __mmask8 m = left >= 8 ? static_cast<__mmask8>(0xff) : static_cast<__mmask8>((1u << left) - 1);
    const __m256i stride = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32(static_cast<int>(rows)));
    _mm256_mask_i32scatter_ps(y, m, stride, _mm256_mul_ps(_mm256_set1_ps(alpha), accf), 4);
  }
};

// Many tokens, step 2: rows 8 half .. 8 half + 7 of the unit at r0, token tile tt (T: its registers).
// Prefetch: pf_begin .. pf_end, a slice per chunk (the next unit's codes; a template parameter, as
// the loop in the kernel without prefetches cost 10-20% at 128 tokens).
template <class T, bool Prefetch>
void token_tile(const CodebookView& v, const ActI8Pointers& x, const Scratch& S, int64_t ng16, int64_t r0, int half,
                int64_t tt, const float* av, float* y, const uint8_t* pf_begin, const uint8_t* pf_end) {
  const int64_t nch = v.cols / kChunk, per = v.group / kChunk;
  const int64_t pf_step = (pf_end - pf_begin + nch - 1) / nch;
  int64_t g = 0, in_group = 0;
  typename T::F accf[8];
  for (int r = 0; r < 8; ++r) accf[r] = T::zerof();
  for (int64_t c = 0; c < nch; ++c) {
    if constexpr (Prefetch)
      for (const uint8_t* pf = pf_begin + c * pf_step; pf < pf_begin + (c + 1) * pf_step && pf < pf_end; pf += 64)
        _mm_prefetch(reinterpret_cast<const char*>(pf), _MM_HINT_T0);
    const int8_t* a = S.a + (c * kUnit + 8 * half) * kChunk;
    const int8_t* b = x.tiles + (c * x.ntt + tt) * 1024;
    typename T::I acc[8];
    for (int r = 0; r < 8; ++r) acc[r] = T::zero();
#pragma GCC unroll 16
    for (int kk = 0; kk < 16; ++kk) {
      const typename T::I bu = T::flip(T::load(b + 64 * kk));  // q + 128
#pragma GCC unroll 8
      for (int r = 0; r < 8; ++r) {
        int32_t w4;  // the row's 4 levels: an embedded broadcast
        __builtin_memcpy(&w4, a + r * kChunk + 4 * kk, 4);
        acc[r] = T::dpbusd(acc[r], bu, w4);
      }
    }
    const typename T::F dv = T::loadf(x.d + (c * x.ntt + tt) * 16);
    const float* sc = S.s + 8 * half * ng16 + g;
    const int32_t* corr = S.corr + 8 * half * nch + c;
    for (int r = 0; r < 8; ++r) accf[r] = T::fold(acc[r], corr[r * nch], sc[r * ng16], dv, accf[r]);
    if (++in_group == per) in_group = 0, ++g;
  }
  const int64_t t0 = 16 * tt;
  for (int r = 0; r < 8; ++r) {
    const int64_t row = r0 + 8 * half + r;
    if (row >= v.rows) break;
    T::store(y + t0 * v.rows + row, v.rows, x.n - t0, av[8 * half + r], accf[r]);
  }
}

template <class U>
void run(const CodebookView& v, const U& up, const int8_t* levels, const float* alpha, const ActI8Pointers& x,
         int64_t tile_tokens, float* y, const Scratch& S, int64_t u0, int64_t u1) {
  alignas(64) float av[2 * kUnit] = {};
  const int64_t ng16 = (v.ngroups + 15) / 16 * 16;
  for (int64_t u = u0; u < u1; ++u) {
    const int64_t r0 = u * kUnit;
    unit_scales(v, alpha, r0, ng16, S.s, av);
    // The next unit's scales (16 rows of f16), needed first thing there.
    const uint8_t* ns = v.scales + (r0 + kUnit) * v.ngroups * 2;
    const uint8_t* s_end = v.scales + v.rows * v.ngroups * 2;
    for (const uint8_t* pf = ns; pf < ns + kUnit * v.ngroups * 2 && pf < s_end; pf += 64)
      _mm_prefetch(reinterpret_cast<const char*>(pf), _MM_HINT_T0);
    if (x.n >= tile_tokens) {
      unpack_unit<U>(v, up, levels, r0, S);
      // At most 16 tokens (one tile per half: batched decode), the next unit's codes arrive during the
      // first tile (without this, the unpack waited on memory: about half its time at 16 tokens). With
      // more tiles the unpack matters less, and the one build that also prefetched at 128 tokens
      // measured 10-15% slower there (that build also tested the prefetch at run time in the kernel).
      const uint8_t* q_end = v.q + v.rows * v.row_bytes;
      const uint8_t* next = min64(r0 + kUnit, v.rows) * v.row_bytes + v.q;
      const uint8_t* next_end = next + kUnit * v.row_bytes < q_end ? next + kUnit * v.row_bytes : q_end;
      for (int half = 0; half < 2 && r0 + 8 * half < v.rows; ++half)
        for (int64_t tt = 0; tt < x.ntt; ++tt) {
          const bool pf = half == 0 && x.ntt == 1;
          if (x.n - 16 * tt > 8) {
            if (pf) token_tile<Tokens16, true>(v, x, S, ng16, r0, half, tt, av, y, next, next_end);
            else token_tile<Tokens16, false>(v, x, S, ng16, r0, half, tt, av, y, next, next);
          } else {
            if (pf) token_tile<Tokens8, true>(v, x, S, ng16, r0, half, tt, av, y, next, next_end);
            else token_tile<Tokens8, false>(v, x, S, ng16, r0, half, tt, av, y, next, next);
          }
        }
    } else {
      for (int64_t t0 = 0; t0 < x.n; t0 += 4)
        few_tokens_unit<U>(v, up, levels, x, r0, t0, min64(4, x.n - t0), S.s, ng16, av, y);
    }
  }
}

}  // namespace
}  // namespace upg::kernels
