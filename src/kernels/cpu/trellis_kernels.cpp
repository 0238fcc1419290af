// Trellis CPU kernels. Contracts and the technique: see trellis_kernels.h.
#include "kernels/cpu/trellis_kernels.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "base/cpu_features.h"
#include "base/half.h"
#include "base/thread_pool.h"
#include "kernels/trellis_code.h"
#include "kernels/cpu/tile_gemm.h"
#include "kernels/cpu/trellis_i16.h"
#include "kernels/cpu/trellis_kernels_avx512.h"

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>

#include "kernels/cpu/trellis_states_avx2.h"
#define UPG_TRELLIS_AVX2 1
#endif

namespace upg::kernels {

namespace {

inline float row_scale(const TrellisView& v, int64_t r, int64_t j) {
  uint16_t h;
  std::memcpy(&h, v.scales + 2 * (r * v.ngroups + j / v.group), 2);
  return f16_to_f32(h);
}

}  // namespace

uint32_t trellis_state_at(const uint8_t* row, int64_t row_bytes, int64_t bit, int L) {
  const int64_t b = bit >> 3;
  uint32_t w = 0;
  if (b + 4 <= row_bytes) {
    w = (uint32_t{row[b]} << 24) | (uint32_t{row[b + 1]} << 16) | (uint32_t{row[b + 2]} << 8) | row[b + 3];
  } else {
    for (int i = 0; i < 4; ++i) w = (w << 8) | (b + i < row_bytes ? row[b + i] : 0u);
  }
  return (w << (bit & 7)) >> (32 - L);
}

namespace {

#ifdef UPG_TRELLIS_AVX2
// 8 weights (code * scale) from the chunk whose first state starts at byte `src` (bit offset 0);
// needs 8 readable bytes.
struct Chunk8 {
  TrellisStates8 st;
  explicit Chunk8(const TrellisView& v) : st(v) {}
  __m256 weights(const uint8_t* src, float scale) const {
    const __m256 c = _mm256_cvtepi32_ps(_mm256_sub_epi32(st.byte_sums(src), _mm256_set1_epi32(510)));
    return _mm256_mul_ps(c, _mm256_set1_ps(scale * trellis::kCodeUnit));
  }
};
#endif

}  // namespace

void trellis_decode_segment_scalar(const TrellisView& v, int64_t r, int64_t c0, int64_t m, float* out) {
  const uint8_t* row = v.q + r * v.row_bytes;
  for (int64_t j = c0; j < c0 + m; ++j)
    out[j - c0] = row_scale(v, r, j) * trellis::code(trellis_state_at(row, v.row_bytes, j * v.k, v.l));
}

void trellis_decode_segment(const TrellisView& v, int64_t r, int64_t c0, int64_t m, float* out) {
  int64_t j = c0;
  const int64_t end = c0 + m;
#ifdef UPG_TRELLIS_AVX2
  if (c0 % 8 == 0) {
    const uint8_t* row = v.q + r * v.row_bytes;
    if (simd_level() >= SimdLevel::Avx512) j = trellis_decode_chunks_avx512(v, r, j, end, out + (j - c0));
    const Chunk8 ch(v);
    for (; j + 8 <= end && (j * v.k) / 8 + 8 <= v.row_bytes; j += 8)
      _mm256_storeu_ps(out + (j - c0), ch.weights(row + (j * v.k) / 8, row_scale(v, r, j)));
  }
#endif
  if (j < end) trellis_decode_segment_scalar(v, r, j, end - j, out + (j - c0));
}

namespace {

// Row r's group scales times the code's unit (1/128), fp32.
void unit_scales(const TrellisView& v, int64_t r, float* out) {
  const uint8_t* s = v.scales + 2 * r * v.ngroups;
  int64_t g = 0;
#ifdef UPG_TRELLIS_AVX2
  for (; g + 8 <= v.ngroups; g += 8)
    _mm256_storeu_ps(out + g, _mm256_mul_ps(_mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(s + 2 * g))),
                                            _mm256_set1_ps(trellis::kCodeUnit)));
#endif
  for (; g < v.ngroups; ++g) {
    uint16_t h;
    std::memcpy(&h, s + 2 * g, 2);
    out[g] = f16_to_f32(h) * trellis::kCodeUnit;
  }
}

#ifdef UPG_TRELLIS_AVX2
inline __m256i tail_mask(int64_t valid) {
  alignas(32) static const int32_t kIdx[8] = {0, 1, 2, 3, 4, 5, 6, 7};
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int32_t>(valid)),
                            _mm256_load_si256(reinterpret_cast<const __m256i*>(kIdx)));
}

inline float hsum8(__m256 v) {  // the reduction of tile_gemm.cpp's micro kernel
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// The fused path: rows r .. r + R - 1 (each decoded once, in registers) times NT tokens (x rows t,
// stride cols; y rows t, stride rows). Each (row, token) gets the tiled path's sums bit for bit, so
// a token's product does not depend on how many tokens share the call: per kTileCols-column tile
// one 8-lane FMA chain (lane l: the tile's columns l, l + 8, ...; the row's last, partial chunk
// with zeros in the missing lanes of both operands), reduced by hsum8 and added to the sum from 0.
// With AVX-512 the chunks of 16 are decoded by trellis_chains_avx512 (the same chains).
// sc: the R rows' unit scales (unit_scales), stride ngroups.
template <int R, int NT>
void rows_fused(const TrellisView& v, int64_t r, const float* sc, const float* x, float* y) {
  const Chunk8 ch(v);
  const uint8_t* row[R];
  float s[R][NT];
  for (int i = 0; i < R; ++i) {
    row[i] = v.q + (r + i) * v.row_bytes;
    for (int t = 0; t < NT; ++t) s[i][t] = 0.0f;
  }
  __m256 acc[R][NT];
  int64_t j = 0;
  if (simd_level() >= SimdLevel::Avx512) {  // as far as 16-byte loads stay inside the row
    alignas(32) float mem[R * NT * 8];
    j = trellis_chains_avx512(v, r, R, sc, x, v.cols, NT, kTileCols, &s[0][0], mem);
    for (int i = 0; i < R; ++i)
      for (int t = 0; t < NT; ++t) acc[i][t] = _mm256_load_ps(mem + (i * NT + t) * 8);
  } else {
    for (int i = 0; i < R; ++i)
      for (int t = 0; t < NT; ++t) acc[i][t] = _mm256_setzero_ps();
  }
  while (j < v.cols) {  // the rest of the tile holding j, then whole tiles
    const int64_t end = std::min(v.cols, j / kTileCols * kTileCols + kTileCols);
    for (; j + 8 <= end && (j * v.k) / 8 + 8 <= v.row_bytes; j += 8) {
      __m256 xv[NT];
      for (int t = 0; t < NT; ++t) xv[t] = _mm256_loadu_ps(x + t * v.cols + j);
      if ((((j * v.k) / 8) & 63) < v.k)  // R streams: prefetched (as in trellis_chains_avx512)
        for (int i = 0; i < R; ++i) _mm_prefetch(reinterpret_cast<const char*>(row[i] + (j * v.k) / 8 + 1024), _MM_HINT_T0);
      for (int i = 0; i < R; ++i) {
        // sc holds scale / 128 (exact): weights() multiplies by 1/128 again, so pass sc * 128.
        const __m256 w = ch.weights(row[i] + (j * v.k) / 8, sc[i * v.ngroups + j / v.group] * 128.0f);
        for (int t = 0; t < NT; ++t) acc[i][t] = _mm256_fmadd_ps(xv[t], w, acc[i][t]);
      }
    }
    for (; j < end; j += 8) {  // the row's last weights (loads would pass its end): scalar decode
      const int64_t m = std::min<int64_t>(8, end - j);
      const __m256i mask = tail_mask(m);
      __m256 xv[NT];
      for (int t = 0; t < NT; ++t) xv[t] = _mm256_maskload_ps(x + t * v.cols + j, mask);
      for (int i = 0; i < R; ++i) {
        alignas(32) float w[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        trellis_decode_segment_scalar(v, r + i, j, m, w);
        const __m256 wv = _mm256_load_ps(w);
        for (int t = 0; t < NT; ++t) acc[i][t] = _mm256_fmadd_ps(xv[t], wv, acc[i][t]);
      }
    }
    j = end;
    for (int i = 0; i < R; ++i)
      for (int t = 0; t < NT; ++t) s[i][t] += hsum8(acc[i][t]), acc[i][t] = _mm256_setzero_ps();
  }
  for (int i = 0; i < R; ++i)
    for (int t = 0; t < NT; ++t) y[t * v.rows + r + i] = s[i][t];
}

// Rows r .. r + nr - 1 (nr <= 4) times nt tokens (nt <= 4): 4 chains at most (R x NT).
void rows_fused_any(const TrellisView& v, int64_t r, int nr, const float* sc, const float* x, int nt, float* y) {
  if (nt == 1) {
    switch (nr) {
      case 1: return rows_fused<1, 1>(v, r, sc, x, y);
      case 2: return rows_fused<2, 1>(v, r, sc, x, y);
      case 3: return rows_fused<3, 1>(v, r, sc, x, y);
      default: return rows_fused<4, 1>(v, r, sc, x, y);
    }
  }
  if (nt == 2 && nr >= 2) {
    rows_fused<2, 2>(v, r, sc, x, y);
    if (nr > 2) rows_fused_any(v, r + 2, nr - 2, sc + 2 * v.ngroups, x, nt, y);
    return;
  }
  for (int i = 0; i < nr; ++i) {
    const float* si = sc + i * v.ngroups;
    switch (nt) {
      case 2: rows_fused<1, 2>(v, r + i, si, x, y); break;
      case 3: rows_fused<1, 3>(v, r + i, si, x, y); break;
      default: rows_fused<1, 4>(v, r + i, si, x, y); break;
    }
  }
}
#endif

}  // namespace

void trellis_matmul(const TrellisView& v, const float* x, int64_t n, float* y) {
  if (trellis_i16_active(v)) {  // int16 activations, every token count (trellis_i16.h)
    thread_local ActI16 a;
    quantize_act_i16(x, n, v.cols, trellis_i16_chunk(v.cols, v.group), a);
    if (a.finite) return trellis_matmul_i16(v, a, y);
  }
#ifdef UPG_TRELLIS_AVX2
  if (n <= kFusedTokens) {  // decode and small batches: each row decoded once per 4 tokens, in registers
    constexpr int64_t R = 4;  // rows per step
    parallel_for_dynamic((v.rows + R - 1) / R, 4, [&](int64_t g0, int64_t g1) {
      thread_local std::vector<float> sc;
      sc.resize(static_cast<size_t>(R * v.ngroups));
      for (int64_t g = g0; g < g1; ++g) {
        const int64_t r = g * R;
        const int nr = static_cast<int>(std::min(R, v.rows - r));
        for (int i = 0; i < nr; ++i) unit_scales(v, r + i, sc.data() + i * v.ngroups);
        for (int64_t t0 = 0; t0 < n; t0 += 4)
          rows_fused_any(v, r, nr, sc.data(), x + t0 * v.cols, static_cast<int>(std::min<int64_t>(4, n - t0)),
                         y + t0 * v.rows);
      }
    });
    return;
  }
#endif
  tiled_matmul(v.rows, v.cols, x, n, y, [&](int64_t r0, int64_t nr, int64_t c0, int64_t kc, float* tile, int64_t ldt) {
    for (int64_t i = 0; i < nr; ++i) trellis_decode_segment(v, r0 + i, c0, kc, tile + i * ldt);
  });
}

}  // namespace upg::kernels
