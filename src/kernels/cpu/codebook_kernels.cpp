// Codebook CPU kernels. Contracts and the technique: see codebook_kernels.h.
#include "kernels/cpu/codebook_kernels.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "base/cpu_features.h"
#include "base/half.h"
#include "base/thread_pool.h"
#include "kernels/cpu/codebook_kernels_avx512.h"
#include "kernels/cpu/dispatch.h"
#include "kernels/cpu/tile_gemm.h"

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>
#define UPG_CB_AVX2 1
#endif

namespace upg::kernels {

namespace {

inline int64_t block_of(const CodebookView& v, int64_t r) { return r / v.cb_rows; }
inline const float* level_table(const CodebookView& v, int64_t r) {
  return v.levels + block_of(v, r) * (int64_t{1} << v.k);
}

#ifdef UPG_CB_AVX2

// Row r's f16 scales to fp32 (ngroups values).
void row_scales(const CodebookView& v, int64_t r, float* out) {
  const uint8_t* s = v.scales + r * v.ngroups * 2;
  int64_t g = 0;
  for (; g + 8 <= v.ngroups; g += 8)
    _mm256_storeu_ps(out + g, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(s + 2 * g))));
  for (; g < v.ngroups; ++g) {
    uint16_t h;
    std::memcpy(&h, s + 2 * g, 2);
    out[g] = f16_to_f32(h);
  }
}

// Bytes of slack the unpacker may read past a chunk's first byte.
constexpr int64_t kLoadBytes = 16;

// Row r's codes, readable for kLoadBytes past any chunk start: in place when the array extends
// far enough, else a zero-padded copy in `pad`.
const uint8_t* padded_row(const CodebookView& v, int64_t r, std::vector<uint8_t>& pad) {
  const uint8_t* row = v.q + r * v.row_bytes;
  if ((r + 1) * v.row_bytes + kLoadBytes <= v.rows * v.row_bytes) return row;
  pad.assign(static_cast<size_t>(v.row_bytes + kLoadBytes), 0);
  std::memcpy(pad.data(), row, static_cast<size_t>(v.row_bytes));
  return pad.data();
}

// Unpacks 8 K-bit codes starting at byte p (bit 0 of p[0]) into 8 int32 lanes. K <= 4: one
// 32-bit broadcast + variable shift + mask; K > 4: the in-lane byte shuffle first.
template <int K>
struct Unpack8 {
  __m256i shuf, shift, mask;
  Unpack8() {
    alignas(32) int8_t s[32];
    alignas(32) int32_t sh[8];
    for (int i = 0; i < 8; ++i) {
      const int bit = i * K, b = bit >> 3, lane = (i % 4) * 4 + (i / 4) * 16;
      s[lane] = static_cast<int8_t>(b);
      s[lane + 1] = static_cast<int8_t>(b + 1);
      s[lane + 2] = s[lane + 3] = static_cast<int8_t>(0x80);
      sh[i] = K <= 4 ? bit : bit & 7;
    }
    shuf = _mm256_load_si256(reinterpret_cast<const __m256i*>(s));
    shift = _mm256_load_si256(reinterpret_cast<const __m256i*>(sh));
    mask = _mm256_set1_epi32((1 << K) - 1);
  }
  __m256i operator()(const uint8_t* p) const {
    if constexpr (K <= 4) {  // 8 codes fit in 32 bits: broadcast the word, shift lane i by i * K
      int32_t w;
      std::memcpy(&w, p, 4);
      return _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32(w), shift), mask);
    }
    const __m256i raw = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    return _mm256_and_si256(_mm256_srlv_epi32(_mm256_shuffle_epi8(raw, shuf), shift), mask);
  }
};

// The level table of one row, pre-multiplied by a group scale, held in registers (K <= 6) or
// looked up by gather and multiplied (K >= 7). Values are s * L[c], rounded once, exactly as
// the reference decode computes them.
template <int K>
struct Lookup {
  static constexpr int kRegs = K <= 3 ? 1 : (1 << K) / 8;
  alignas(32) float lv[K <= 3 ? 8 : (1 << K)] = {};
  __m256 t[kRegs > 8 ? 1 : kRegs];
  __m256 s;
  Lookup() = default;
  explicit Lookup(const float* L) { init(L); }
  void init(const float* L) { std::memcpy(lv, L, sizeof(float) << K); }
  void set_scale(float scale) {
    s = _mm256_set1_ps(scale);
    if constexpr (K <= 6)
      for (int i = 0; i < kRegs; ++i) t[i] = _mm256_mul_ps(_mm256_load_ps(lv + 8 * i), s);
  }
  // Table registers [i, i + 4) selected by code bits 3 and 4 (b3, b4: those bits moved to the sign).
  __m256 pick4(int i, __m256i c, __m256 b3, __m256 b4) const {
    const __m256 lo = _mm256_blendv_ps(_mm256_permutevar8x32_ps(t[i], c), _mm256_permutevar8x32_ps(t[i + 1], c), b3);
    const __m256 hi = _mm256_blendv_ps(_mm256_permutevar8x32_ps(t[i + 2], c), _mm256_permutevar8x32_ps(t[i + 3], c), b3);
    return _mm256_blendv_ps(lo, hi, b4);
  }
  __m256 operator()(__m256i c) const {
    if constexpr (K <= 3) {
      return _mm256_permutevar8x32_ps(t[0], c);
    } else if constexpr (K == 4) {
      return _mm256_blendv_ps(_mm256_permutevar8x32_ps(t[0], c), _mm256_permutevar8x32_ps(t[1], c),
                              _mm256_castsi256_ps(_mm256_slli_epi32(c, 28)));
    } else if constexpr (K == 5) {
      return pick4(0, c, _mm256_castsi256_ps(_mm256_slli_epi32(c, 28)), _mm256_castsi256_ps(_mm256_slli_epi32(c, 27)));
    } else if constexpr (K == 6) {  // 8 permutes + 7 blends: cheaper than a gather on Zen 2/3
      const __m256 b3 = _mm256_castsi256_ps(_mm256_slli_epi32(c, 28)), b4 = _mm256_castsi256_ps(_mm256_slli_epi32(c, 27));
      return _mm256_blendv_ps(pick4(0, c, b3, b4), pick4(4, c, b3, b4), _mm256_castsi256_ps(_mm256_slli_epi32(c, 26)));
    } else {
      return _mm256_mul_ps(_mm256_i32gather_ps(lv, c, 4), s);
    }
  }
};

inline __m256i tail_mask(int64_t valid) {
  alignas(32) static const int32_t kIdx[8] = {0, 1, 2, 3, 4, 5, 6, 7};
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int32_t>(valid)),
                            _mm256_load_si256(reinterpret_cast<const __m256i*>(kIdx)));
}

inline float hsum8(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// W[r][c0 .. c0 + m) -> out; c0 % 8 == 0; row readable kLoadBytes past every chunk.
template <int K>
void decode_segment_avx2(const CodebookView& v, int64_t r, const uint8_t* row, int64_t c0, int64_t m,
                         float* out) {
  const Unpack8<K> unpack;
  Lookup<K> lut(level_table(v, r));
  const uint8_t* sc = v.scales + r * v.ngroups * 2;
  int64_t j = 0;
  while (j < m) {
    const int64_t c = c0 + j, g = c / v.group, gend = std::min(c0 + m, (g + 1) * v.group) - c0;
    uint16_t h;
    std::memcpy(&h, sc + 2 * g, 2);
    lut.set_scale(_cvtsh_ss(h));
    for (; j + 8 <= gend; j += 8) _mm256_storeu_ps(out + j, lut(unpack(row + (c0 + j) / 8 * K)));
    if (j < gend) {  // the segment's last, partial chunk
      _mm256_maskstore_ps(out + j, tail_mask(gend - j), lut(unpack(row + (c0 + j) / 8 * K)));
      j = gend;
    }
  }
}

// One token, rows r .. r + R - 1: y[r + i] = the tiled path's sums for that row (decode_segment_avx2
// + gemm_tile_nt), bit for bit, so a token's product does not depend on the other tokens of the
// call: per kTileCols-column tile one 8-lane FMA chain (lane l: the tile's columns l, l + 8, ...;
// the row's last, partial chunk with zeros in the missing lanes of both operands), reduced by hsum8
// and added to the row's sum from 0. Decoded in registers (the same values: s * L[c] rounded once);
// R rows give R independent chains. With AVX-512 (K <= 6, group % 16 == 0) the chunks of 16 are
// decoded by codebook_chains_avx512 (the same chains). sc: the rows' scales, stride ngroups.
template <int K, int R>
void rows_one_token(const CodebookView& v, int64_t r, const uint8_t* const* row, const float* sc, const float* x,
                    const Unpack8<K>& unpack, bool use512, float* y) {
  const float* levels[R];
  float s[R];
  Lookup<K> lut[R];
  for (int i = 0; i < R; ++i) levels[i] = level_table(v, r + i), s[i] = 0.0f, lut[i].init(levels[i]);
  __m256 acc[R];
  int64_t j = 0;
  if (use512) {  // all but the row's last columns (fewer than 16)
    alignas(32) float mem[R * 8];
    j = codebook_chains_avx512(v, R, levels, row, sc, x, kTileCols, s, mem);
    for (int i = 0; i < R; ++i) acc[i] = _mm256_load_ps(mem + 8 * i);
  } else {
    for (int i = 0; i < R; ++i) acc[i] = _mm256_setzero_ps();
  }
  while (j < v.cols) {  // the rest of the tile holding j, then whole tiles
    const int64_t end = std::min(v.cols, j / kTileCols * kTileCols + kTileCols);
    while (j < end) {  // chunks of 8 never straddle a group (group % 8 == 0)
      const int64_t g = j / v.group, gend = std::min(end, (g + 1) * v.group);
      for (int i = 0; i < R; ++i) lut[i].set_scale(sc[i * v.ngroups + g]);
      for (; j + 8 <= gend; j += 8) {  // the R chains interleaved
        const __m256 xv = _mm256_loadu_ps(x + j);
        if (((j / 8 * K) & 63) < K)  // R streams: prefetched (as in codebook_chains_avx512)
          for (int i = 0; i < R; ++i) _mm_prefetch(reinterpret_cast<const char*>(row[i] + j / 8 * K + 1024), _MM_HINT_T0);
        for (int i = 0; i < R; ++i) acc[i] = _mm256_fmadd_ps(xv, lut[i](unpack(row[i] + j / 8 * K)), acc[i]);
      }
      if (j < gend) {  // the row's last, partial chunk
        const __m256i mask = tail_mask(gend - j);
        const __m256 xv = _mm256_maskload_ps(x + j, mask);
        for (int i = 0; i < R; ++i) {
          const __m256 w = _mm256_and_ps(lut[i](unpack(row[i] + j / 8 * K)), _mm256_castsi256_ps(mask));
          acc[i] = _mm256_fmadd_ps(xv, w, acc[i]);
        }
        j = gend;
      }
    }
    for (int i = 0; i < R; ++i) s[i] += hsum8(acc[i]), acc[i] = _mm256_setzero_ps();
  }
  for (int i = 0; i < R; ++i) y[r + i] = s[i];
}

template <int K>
void matvec_avx2(const CodebookView& v, const float* x, float* y) {
  const bool use512 = K <= 6 && v.group % 16 == 0 && simd_level() >= SimdLevel::Avx512;
  // Rows per step (independent chains; with k = 5, 6 their AVX2 tables spill, still faster than 2).
  const int64_t R = 4;
  parallel_for((v.rows + R - 1) / R, [&](int64_t g0, int64_t g1) {
    const Unpack8<K> unpack;
    std::vector<float> sc(static_cast<size_t>(4 * v.ngroups));
    std::vector<uint8_t> pad[4];
    const uint8_t* row[4];
    for (int64_t g = g0; g < g1; ++g) {
      const int64_t r = g * R, nr = std::min(R, v.rows - r);
      for (int64_t i = 0; i < nr; ++i) {
        row_scales(v, r + i, sc.data() + i * v.ngroups);
        row[i] = padded_row(v, r + i, pad[i]);
      }
      switch (nr) {
        case 1: rows_one_token<K, 1>(v, r, row, sc.data(), x, unpack, use512, y); break;
        case 2: rows_one_token<K, 2>(v, r, row, sc.data(), x, unpack, use512, y); break;
        case 3: rows_one_token<K, 3>(v, r, row, sc.data(), x, unpack, use512, y); break;
        default: rows_one_token<K, 4>(v, r, row, sc.data(), x, unpack, use512, y); break;
      }
    }
  });
}

template <int K>
void decode_tile_avx2(const CodebookView& v, int64_t r0, int64_t nr, int64_t c0, int64_t kc, float* tile,
                      int64_t ldt, std::vector<uint8_t>& pad) {
  for (int64_t i = 0; i < nr; ++i)
    decode_segment_avx2<K>(v, r0 + i, padded_row(v, r0 + i, pad), c0, kc, tile + i * ldt);
}

template <int K>
void matmul_tiled_avx2(const CodebookView& v, const float* x, int64_t n, float* y) {
  tiled_matmul(v.rows, v.cols, x, n, y, [&](int64_t r0, int64_t nr, int64_t c0, int64_t kc, float* t, int64_t ldt) {
    thread_local std::vector<uint8_t> pad;
    decode_tile_avx2<K>(v, r0, nr, c0, kc, t, ldt, pad);
  });
}

template <int K>
void decode_segment_k(const CodebookView& v, int64_t r, int64_t c0, int64_t m, float* out) {
  std::vector<uint8_t> pad;
  decode_segment_avx2<K>(v, r, padded_row(v, r, pad), c0, m, out);
}


#endif  // UPG_CB_AVX2

}  // namespace

bool codebook_packed_in_chunks(const CodebookView& v, int64_t chunk) {
  return v.cols > 0 && v.cols % chunk == 0 && v.group > 0 && v.group % chunk == 0 && v.cb_rows > 0 &&
         v.row_bytes == v.cols * v.k / 8 && v.ngroups == (v.cols + v.group - 1) / v.group;
}

void codebook_decode_segment_reference(const CodebookView& v, int64_t r, int64_t c0, int64_t m, float* out) {
  const uint8_t* row = v.q + r * v.row_bytes;
  const float* L = level_table(v, r);
  const uint64_t mask = (uint64_t{1} << v.k) - 1;
  for (int64_t j = 0; j < m; j += 8) {
    // Chunk of 8 codes at column c0 + j (a multiple of 8) = the k bytes at (c0 + j) / 8 * k; the
    // last chunk of a row may have fewer bytes.
    const int64_t byte = (c0 + j) / 8 * v.k;
    uint64_t bits = 0;
    std::memcpy(&bits, row + byte, static_cast<size_t>(std::min<int64_t>(v.k, v.row_bytes - byte)));
    for (int64_t i = 0; i < std::min<int64_t>(8, m - j); ++i) {
      uint16_t h;
      std::memcpy(&h, v.scales + 2 * (r * v.ngroups + (c0 + j + i) / v.group), 2);
      out[j + i] = f16_to_f32(h) * L[(bits >> (i * v.k)) & mask];
    }
  }
}

void codebook_decode_segment(const CodebookView& v, int64_t r, int64_t c0, int64_t m, float* out) {
#ifdef UPG_CB_AVX2
  dispatch_1_to_8(v.k, [&]<int K>() { decode_segment_k<K>(v, r, c0, m, out); });
#else
  codebook_decode_segment_reference(v, r, c0, m, out);
#endif
}

void codebook_matmul_reference(const CodebookView& v, const float* x, int64_t n, float* y) {
  std::vector<float> row(static_cast<size_t>(v.cols));
  for (int64_t r = 0; r < v.rows; ++r) {
    codebook_decode_segment_reference(v, r, 0, v.cols, row.data());
    for (int64_t t = 0; t < n; ++t) {
      float s = 0.0f;
      for (int64_t c = 0; c < v.cols; ++c) s += row[c] * x[t * v.cols + c];
      y[t * v.rows + r] = s;
    }
  }
}

void codebook_matmul(const CodebookView& v, const float* x, int64_t n, float* y) {
  if (n <= 0) return;
#ifdef UPG_CB_AVX2
  if (n == 1) dispatch_1_to_8(v.k, [&]<int K>() { matvec_avx2<K>(v, x, y); });
  else dispatch_1_to_8(v.k, [&]<int K>() { matmul_tiled_avx2<K>(v, x, n, y); });
#else
  tiled_matmul(v.rows, v.cols, x, n, y, [&](int64_t r0, int64_t nr, int64_t c0, int64_t kc, float* t, int64_t ldt) {
    for (int64_t i = 0; i < nr; ++i) codebook_decode_segment_reference(v, r0 + i, c0, kc, t + i * ldt);
  });
#endif
}

void codebook_decode_bf16(const CodebookView& v, int64_t r0, int64_t r1, uint16_t* out) {
  constexpr int64_t kSeg = 1024;  // columns per fp32 staging segment (4 KiB)
  parallel_for(r1 - r0, [&](int64_t i0, int64_t i1) {
    std::vector<float> buf(kSeg);
    for (int64_t r = r0 + i0; r < r0 + i1; ++r)
      for (int64_t c0 = 0; c0 < v.cols; c0 += kSeg) {
        const int64_t m = std::min(kSeg, v.cols - c0);
        codebook_decode_segment(v, r, c0, m, buf.data());
        f32_to_bf16_n(buf.data(), out + (r - r0) * v.cols + c0, m);
      }
  });
}

}  // namespace upg::kernels
