// AMX tile kernel of the codebook path; integers, fp32 order and technique: codebook_i8.h.
// Compiled with AVX-512 and AMX flags: everything here has internal linkage (apart from the two
// functions of codebook_i8_amx.h) and calls no standard-library or project inline function.
#include "kernels/cpu/codebook_i8_amx.h"

#include <immintrin.h>

#include "kernels/cpu/codebook_q8_unpack_avx512.h"

namespace upg::kernels {

namespace {

constexpr int64_t kRowsPerTile = 32;  // two A tiles of 16 rows
constexpr int64_t kChunk = 64;

// Tile registers: 0, 1 = A (rows 0-15, 16-31 of the row tile; one chunk), 2 = B (one 16-token tile),
// 4 + 6 and 5 + 7 = C (A0 B, A1 B), alternating between consecutive (chunk, token tile) steps so
// that one step's tile multiplies overlap the previous step's fp32 fold. All 16 rows x 64 bytes.
// Tokens go in passes of up to kPassTiles 16-token tiles (their B tiles, 1 KiB per chunk each,
// stay in L2 across the row tiles of a pass; their fp32 sums, 2 KiB per tile, in L1).
constexpr int64_t kPassTiles = 8;
struct alignas(64) TileConfig {
  uint8_t palette = 1, start_row = 0, reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};

struct Scratch {
  int8_t* a;    // [nch][32 rows][64] unpacked signed levels (A tiles), 64-aligned
  float* s;     // [nch][32] group scales of the chunk's rows (0 past the last row)
  int32_t* c;   // [2][2][16][16] stored C tiles of two consecutive steps
  float* acc;   // [32 rows][kPassTiles][16] fp32 sums of a pass
};

Scratch carve(uint8_t* base, int64_t cols) {
  const int64_t nch = cols / kChunk;
  Scratch S;
  S.a = reinterpret_cast<int8_t*>(base);
  base += nch * kRowsPerTile * kChunk;
  S.s = reinterpret_cast<float*>(base);
  base += (nch * kRowsPerTile * 4 + 63) / 64 * 64;
  S.c = reinterpret_cast<int32_t*>(base);
  base += 2 * 2 * 1024;
  S.acc = reinterpret_cast<float*>(base);
  return S;
}

// Row tile b's codes to signed levels in S.a and its scales per chunk in S.s.
template <int K>
void unpack_rows(const CodebookView& v, const Unpack2<K>& up, const int8_t* levels, int64_t r0, const Scratch& S) {
  const int64_t nch = v.cols / kChunk, per = v.group / kChunk;
  for (int64_t i = 0; i < kRowsPerTile; ++i) {
    const int64_t r = r0 + i;
    if (r >= v.rows) {
      for (int64_t c = 0; c < nch; ++c) {
        _mm512_store_si512(S.a + (c * kRowsPerTile + i) * kChunk, _mm512_setzero_si512());
        S.s[c * kRowsPerTile + i] = 0.0f;
      }
      continue;
    }
    const uint8_t* row = v.q + r * v.row_bytes;
    const __m512i tbl = _mm512_broadcast_i32x4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(levels + 16 * (r / v.cb_rows))));
    const bool last_row = r == v.rows - 1;
    for (int64_t c = 0; c < nch; ++c) {
      const uint8_t* p = row + 2 * c * 4 * K;
      const __m512i codes = up(p, p + 4 * K, last_row && c == nch - 1);
      _mm512_store_si512(S.a + (c * kRowsPerTile + i) * kChunk, _mm512_shuffle_epi8(tbl, codes));
    }
    const uint8_t* sc = v.scales + r * v.ngroups * 2;
    for (int64_t c = 0; c < nch; ++c) S.s[c * kRowsPerTile + i] = f16(sc + 2 * (c / per));
  }
}

// Step i of a pass = chunk i / nt, token tile tt0 + i % nt: its two C tiles (rows 0-15 and 16-31
// of the row tile) into the C buffer of parity P. A is reloaded at the first token tile of a chunk.
template <int P>
inline void step_tiles(const Scratch& S, const int8_t* btiles, int64_t ntt, int64_t tt0, int64_t nt, int64_t i) {
  const int64_t c = i / nt, tt = tt0 + i % nt;
  if (i % nt == 0) {
    const int8_t* a = S.a + c * kRowsPerTile * kChunk;
    _tile_loadd(0, a, 64);
    _tile_loadd(1, a + 16 * 64, 64);
  }
  _tile_loadd(2, btiles + (c * ntt + tt) * 1024, 64);
  int32_t* cb = S.c + P * 512;
  if constexpr (P == 0) {
    _tile_zero(4);
    _tile_zero(6);
    _tile_dpbssd(4, 0, 2);
    _tile_dpbssd(6, 1, 2);
    _tile_stored(4, cb, 64);
    _tile_stored(6, cb + 256, 64);
  } else {
    _tile_zero(5);
    _tile_zero(7);
    _tile_dpbssd(5, 0, 2);
    _tile_dpbssd(7, 1, 2);
    _tile_stored(5, cb, 64);
    _tile_stored(7, cb + 256, 64);
  }
}

// Step i's fold: acc[r][i % nt] += float(C[r]) * (s[c][r] * d[c][tt]) for the 32 rows.
inline void step_fold(const Scratch& S, const float* d, int64_t ntt, int64_t tt0, int64_t nt, int64_t i) {
  const int64_t c = i / nt, j = i % nt;
  const int32_t* cb = S.c + (i & 1) * 512;
  const __m512 dv = _mm512_loadu_ps(d + (c * ntt + tt0 + j) * 16);
  const float* sc = S.s + c * kRowsPerTile;
  for (int r = 0; r < kRowsPerTile; ++r) {
    float* acc = S.acc + (r * kPassTiles + j) * 16;
    _mm512_store_ps(acc, _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_load_si512(cb + r * 16)),
                                         _mm512_mul_ps(_mm512_set1_ps(sc[r]), dv), _mm512_load_ps(acc)));
  }
}

// Token tiles [tt0, tt0 + nt) (nt <= kPassTiles) of the row tile in S against every chunk; writes y.
void pass(const CodebookView& v, const float* alpha, const int8_t* btiles, const float* d, int64_t n, int64_t ntt,
          int64_t tt0, int64_t nt, int64_t r0, float* y, const Scratch& S) {
  const int64_t steps = v.cols / kChunk * nt;
  for (int i = 0; i < kRowsPerTile * kPassTiles; ++i) _mm512_store_ps(S.acc + 16 * i, _mm512_setzero_ps());
  // Software-pipelined: step i's tile work is issued before step i - 1's fold.
  step_tiles<0>(S, btiles, ntt, tt0, nt, 0);
  int64_t i = 1;
  for (; i + 1 < steps; i += 2) {
    step_tiles<1>(S, btiles, ntt, tt0, nt, i);
    step_fold(S, d, ntt, tt0, nt, i - 1);
    step_tiles<0>(S, btiles, ntt, tt0, nt, i + 1);
    step_fold(S, d, ntt, tt0, nt, i);
  }
  if (i < steps) {
    step_tiles<1>(S, btiles, ntt, tt0, nt, i);
    step_fold(S, d, ntt, tt0, nt, i - 1);
    ++i;
  }
  step_fold(S, d, ntt, tt0, nt, i - 1);
  // y[t][r0 + r] = alpha_r acc[r][t]: one masked scatter of 16 tokens per row and token tile.
  const int64_t rows_here = v.rows - r0 < kRowsPerTile ? v.rows - r0 : kRowsPerTile;
  const __m512i stride = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                            _mm512_set1_epi32(static_cast<int>(v.rows)));
  for (int64_t j = 0; j < nt; ++j) {
    const int64_t t0 = (tt0 + j) * 16, left = n - t0;
    const __mmask16 m = left >= 16 ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << left) - 1);
    for (int64_t r = 0; r < rows_here; ++r) {
      const __m512 out = _mm512_mul_ps(_mm512_set1_ps(alpha[(r0 + r) / v.cb_rows]), _mm512_load_ps(S.acc + (r * kPassTiles + j) * 16));
      _mm512_mask_i32scatter_ps(y + t0 * v.rows + r0 + r, m, stride, out, 4);
    }
  }
}

template <int K>
void run(const CodebookView& v, const Q8K3Unpack& k3, const int8_t* levels, const float* alpha, const int8_t* btiles,
         const float* d, int64_t n, int64_t ntt, float* y, const Scratch& S, int64_t b0, int64_t b1) {
  const Unpack2<K> up(k3);
  for (int64_t b = b0; b < b1; ++b) {
    const int64_t r0 = b * kRowsPerTile;
    unpack_rows<K>(v, up, levels, r0, S);
    for (int64_t tt = 0; tt < ntt; tt += kPassTiles)
      pass(v, alpha, btiles, d, n, ntt, tt, ntt - tt < kPassTiles ? ntt - tt : kPassTiles, r0, y, S);
  }
}

}  // namespace

size_t codebook_i8_amx_scratch_bytes(int64_t cols) {
  const int64_t nch = cols / kChunk;
  return static_cast<size_t>(nch * kRowsPerTile * kChunk + (nch * kRowsPerTile * 4 + 63) / 64 * 64 + 2 * 2 * 1024 +
                             kRowsPerTile * kPassTiles * 16 * 4);
}

void codebook_i8_amx_tiles(const CodebookView& v, const Q8K3Unpack& k3, const int8_t* levels, const float* alpha,
                           const int8_t* btiles, const float* d, int64_t n, int64_t ntt, float* y, uint8_t* scratch,
                           int64_t tile_begin, int64_t tile_end) {
  TileConfig cfg;
  for (int i = 0; i < 8; ++i) cfg.colsb[i] = 64, cfg.rows[i] = 16;
  _tile_loadconfig(&cfg);
  const Scratch S = carve(scratch, v.cols);
  switch (v.k) {
    case 2: run<2>(v, k3, levels, alpha, btiles, d, n, ntt, y, S, tile_begin, tile_end); break;
    case 3: run<3>(v, k3, levels, alpha, btiles, d, n, ntt, y, S, tile_begin, tile_end); break;
    default: run<4>(v, k3, levels, alpha, btiles, d, n, ntt, y, S, tile_begin, tile_end); break;
  }
  _tile_release();
}

}  // namespace upg::kernels
