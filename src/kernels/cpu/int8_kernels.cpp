// int8 CPU kernels. Contracts and technique: see int8_kernels.h.
#include "kernels/cpu/int8_kernels.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "base/half.h"
#include "base/thread_pool.h"
#include "kernels/cpu/tile_gemm.h"

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define UPG_I8_AVX2 1
#endif

namespace upg::kernels {

namespace {

inline float scale_at(const Int8View& v, int64_t r, int64_t g) {
  const size_t i = static_cast<size_t>(r * v.ngroups + g);
  if (v.f16_scales) {
    uint16_t h;
    std::memcpy(&h, v.scales + 2 * i, 2);
    return f16_to_f32(h);
  }
  float f;
  std::memcpy(&f, v.scales + 4 * i, 4);
  return f;
}

#ifdef UPG_I8_AVX2
inline __m256 load8(const int8_t* q) {
  return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(q))));
}

inline float hsum8(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

inline __m256i tail_mask(int64_t valid) {
  alignas(32) static const int32_t kIdx[8] = {0, 1, 2, 3, 4, 5, 6, 7};
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int32_t>(valid)),
                            _mm256_load_si256(reinterpret_cast<const __m256i*>(kIdx)));
}

// One token, Q whole tiles of one row from column c0 (kTileCols % group == 0): the tiled path's
// sums for them (tiled_matmul + gemm_tile_nt), bit for bit: per tile one 8-lane FMA chain over
// the weights q * s (rounded once, as int8_decode_segment gives them), reduced by hsum8 and added
// to the row's sum s in tile order. The Q chains are independent, and the row is still read front
// to back (Q tiles side by side: one stream, as decode wants when it streams W from memory).
// sc: the row's group scales as fp32.
template <int Q>
inline void tiles_one_token(const Int8View& v, const int8_t* q, const float* sc, const float* x, int64_t c0, float& s) {
  __m256 acc[Q];
  for (int t = 0; t < Q; ++t) acc[t] = _mm256_setzero_ps();
  // The Q tiles' chains step through Q places of the row at once, which the hardware prefetcher
  // does not follow as one stream: each step also prefetches the row's bytes as many ahead.
  const int8_t* pf = q + c0 + 2 * 4 * kTileCols;
  for (int64_t g0 = c0; g0 < c0 + kTileCols; g0 += v.group) {
    __m256 sv[Q];
    for (int t = 0; t < Q; ++t) sv[t] = _mm256_set1_ps(sc[(g0 + t * kTileCols) / v.group]);
    for (int64_t c = g0; c < g0 + v.group; c += 8, pf += 8 * Q) {
      if (((c - c0) * Q) % 64 == 0) _mm_prefetch(reinterpret_cast<const char*>(pf), _MM_HINT_T0);
      for (int t = 0; t < Q; ++t) {
        const int64_t ct = c + t * kTileCols;
        acc[t] = _mm256_fmadd_ps(_mm256_loadu_ps(x + ct), _mm256_mul_ps(load8(q + ct), sv[t]), acc[t]);
      }
    }
  }
  for (int t = 0; t < Q; ++t) s += hsum8(acc[t]);
}

// The same for the tile [c0, end) alone, any group % 8 == 0; the row's last, partial chunk with
// zeros in the missing lanes of both operands, as gemm_tile_nt's masked tail.
inline void tile_one_token(const Int8View& v, int64_t r, const int8_t* q, const float* sc, const float* x, int64_t c0,
                           int64_t end, float& s) {
  __m256 acc = _mm256_setzero_ps();
  int64_t c = c0;
  while (c + 8 <= end) {  // chunks never straddle a group (group % 8 == 0)
    const int64_t g = c / v.group, gend = std::min(end, (g + 1) * v.group);
    const __m256 sv = _mm256_set1_ps(sc[g]);
    for (; c + 8 <= gend; c += 8)
      acc = _mm256_fmadd_ps(_mm256_loadu_ps(x + c), _mm256_mul_ps(load8(q + c), sv), acc);
  }
  if (c < end) {  // the row's last chunk (cols % 8 != 0)
    alignas(32) float t[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int8_decode_segment_reference(v, r, c, end - c, t);
    acc = _mm256_fmadd_ps(_mm256_maskload_ps(x + c, tail_mask(end - c)), _mm256_load_ps(t), acc);
  }
  s += hsum8(acc);
}

// One token, row r (group % 8 == 0): the tiled path's sum for it, bit for bit, so a token's
// product does not depend on the other tokens of the call. sc: scratch of ngroups floats.
float row_one_token(const Int8View& v, int64_t r, const float* x, float* sc) {
  for (int64_t g = 0; g < v.ngroups; ++g) sc[g] = scale_at(v, r, g);
  const int8_t* q = v.q + r * v.cols;
  float s = 0.0f;
  int64_t c0 = 0;
  if (kTileCols % v.group == 0) {  // whole tiles 4 at a time
    const int64_t full = v.cols / kTileCols * kTileCols;
    for (; c0 + 4 * kTileCols <= full; c0 += 4 * kTileCols) tiles_one_token<4>(v, q, sc, x, c0, s);
    switch ((full - c0) / kTileCols) {
      case 3: tiles_one_token<3>(v, q, sc, x, c0, s); break;
      case 2: tiles_one_token<2>(v, q, sc, x, c0, s); break;
      case 1: tiles_one_token<1>(v, q, sc, x, c0, s); break;
      default: break;
    }
    c0 = full;
  }
  for (; c0 < v.cols; c0 += kTileCols) tile_one_token(v, r, q, sc, x, c0, std::min(v.cols, c0 + kTileCols), s);
  return s;
}
#endif

}  // namespace

void int8_decode_segment_reference(const Int8View& v, int64_t r, int64_t c0, int64_t m, float* out) {
  for (int64_t j = 0; j < m; ++j)
    out[j] = static_cast<float>(v.q[r * v.cols + c0 + j]) * scale_at(v, r, (c0 + j) / v.group);
}

void int8_decode_segment(const Int8View& v, int64_t r, int64_t c0, int64_t m, float* out) {
#ifdef UPG_I8_AVX2
  const int8_t* q = v.q + r * v.cols;
  int64_t c = c0;
  const int64_t end = c0 + m;
  while (c < end) {
    const int64_t g = c / v.group, gend = std::min(end, (g + 1) * v.group);
    const float sf = scale_at(v, r, g);
    const __m256 s = _mm256_set1_ps(sf);
    for (; c + 8 <= gend; c += 8) _mm256_storeu_ps(out + (c - c0), _mm256_mul_ps(load8(q + c), s));
    for (; c < gend; ++c) out[c - c0] = static_cast<float>(q[c]) * sf;
  }
#else
  int8_decode_segment_reference(v, r, c0, m, out);
#endif
}

void int8_matmul_reference(const Int8View& v, const float* x, int64_t n, float* y) {
  std::vector<float> row(static_cast<size_t>(v.cols));
  for (int64_t r = 0; r < v.rows; ++r) {
    int8_decode_segment_reference(v, r, 0, v.cols, row.data());
    for (int64_t t = 0; t < n; ++t) {
      float s = 0.0f;
      for (int64_t c = 0; c < v.cols; ++c) s += row[c] * x[t * v.cols + c];
      y[t * v.rows + r] = s;
    }
  }
}

void int8_matmul(const Int8View& v, const float* x, int64_t n, float* y) {
  if (n <= 0) return;
#ifdef UPG_I8_AVX2
  if (n == 1 && v.group % 8 == 0) {  // decode: the tiled path's sums, decoded in registers
    parallel_for(v.rows, [&](int64_t r0, int64_t r1) {
      thread_local std::vector<float> sc;
      sc.resize(static_cast<size_t>(v.ngroups));
      for (int64_t r = r0; r < r1; ++r) y[r] = row_one_token(v, r, x, sc.data());
    });
    return;
  }
#endif
  tiled_matmul(v.rows, v.cols, x, n, y, [&](int64_t r0, int64_t nr, int64_t c0, int64_t kc, float* t, int64_t ldt) {
    for (int64_t i = 0; i < nr; ++i) int8_decode_segment(v, r0 + i, c0, kc, t + i * ldt);
  });
}

void int8_decode_bf16(const Int8View& v, int64_t r0, int64_t r1, uint16_t* out) {
  constexpr int64_t kSeg = 1024;
  parallel_for(r1 - r0, [&](int64_t i0, int64_t i1) {
    std::vector<float> buf(kSeg);
    for (int64_t r = r0 + i0; r < r0 + i1; ++r)
      for (int64_t c0 = 0; c0 < v.cols; c0 += kSeg) {
        const int64_t m = std::min(kSeg, v.cols - c0);
        int8_decode_segment(v, r, c0, m, buf.data());
        f32_to_bf16_n(buf.data(), out + (r - r0) * v.cols + c0, m);
      }
  });
}

}  // namespace upg::kernels
