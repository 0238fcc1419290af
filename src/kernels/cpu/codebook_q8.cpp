// Integer-dot-product codebook kernels. Technique, accuracy contract and costs: codebook_q8.h.
#include "kernels/cpu/codebook_q8.h"

#include "kernels/cpu/dispatch.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>

#include "base/cpu_features.h"
#include "base/half.h"
#include "base/thread_pool.h"
#include "kernels/cpu/codebook_q8_avx512vnni.h"

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>
#define UPG_CBQ8_AVX2 1
#endif

namespace upg::kernels {

namespace {

constexpr int kBlock = 32;
constexpr int kMaxMult = 4095;  // block multipliers m_b are 12-bit
constexpr int kChunk = 8;       // at most this many blocks summed in int32 (< 2^31, see the header)

// pi_k[p] = the block-relative code index whose weight the fast unpack puts in byte p.
struct Perms {
  std::array<std::array<uint8_t, 32>, 3> pi{};  // k = 2, 3, 4
  // k = 3 unpack constants (see the header): vpshufb indices, the two per-dword shifts, blend mask.
  alignas(32) uint8_t k3_shuf[32];
  alignas(32) uint32_t k3_s1[8], k3_s2[8];
  alignas(32) uint8_t k3_sel[32];
  Perms() {
    for (int p = 0; p < 32; ++p) {
      pi[0][p] = static_cast<uint8_t>(4 * (p % 8) + p / 8);   // k = 2: qword s, byte i -> 4 i + s
      pi[2][p] = static_cast<uint8_t>(2 * (p % 16) + p / 16); // k = 4: lane h, byte i -> 2 i + h
    }
    // k = 3. Code c sits at stream bit 3c: byte 3c / 8, offset 3c % 8, which depends on c % 8 only
    // (0, 3, 6, 1, 4, 7, 2, 5 for c % 8 = 0..7). Each dword holds codes of two offsets, extracted by
    // a 32-bit right shift of each offset and a byte blend. Codes at offsets 6 and 7 straddle two
    // bytes; the dword byte after them holds their next byte (where the code c + 1 of offset 1 or
    // 2 starts), so the 32-bit shift brings the straddling bits in.
    static const int kDword[4][4] = {{2, 3, 2, 3}, {5, 6, 5, 6}, {0, 0, 1, 1}, {4, 4, 7, 7}};  // c % 8
    static const int kM[4][4] = {{0, 0, 1, 1}, {0, 0, 1, 1}, {0, 1, 0, 1}, {0, 1, 0, 1}};      // + 8 (2L + m)
    for (int L = 0; L < 2; ++L)
      for (int D = 0; D < 4; ++D) {
        const int dw = 4 * L + D;
        for (int t = 0; t < 4; ++t) {
          const int p = 16 * L + 4 * D + t, c = kDword[D][t] + 8 * (2 * L + kM[D][t]);
          pi[1][p] = static_cast<uint8_t>(c);
          k3_shuf[p] = static_cast<uint8_t>(3 * c / 8);
          const uint32_t off = static_cast<uint32_t>(3 * c % 8);
          if (t == 0) k3_s1[dw] = off;
          if (t == 3) k3_s2[dw] = off;
        }
        for (int t = 0; t < 4; ++t)
          k3_sel[16 * L + 4 * D + t] = (3 * pi[1][16 * L + 4 * D + t] % 8) == static_cast<int>(k3_s1[dw]) ? 0 : 0x80;
      }
  }
};
const Perms& perms() {
  static const Perms p;
  return p;
}

// gsum[t][g] = sum over the blocks b of group g of d_b * bsum_b (the level offset's term); rows
// zero-padded to a multiple of `pad` groups.
std::vector<float> group_dsums(const CodebookView& v, const ActQ8& x, int64_t pad = 8) {
  const int64_t ng8 = (v.ngroups + pad - 1) / pad * pad, per = v.group / kBlock;
  std::vector<float> gs(static_cast<size_t>(x.n * ng8), 0.0f);
  for (int64_t t = 0; t < x.n; ++t)
    for (int64_t b = 0; b < x.nblk; ++b)
      gs[static_cast<size_t>(t * ng8 + b / per)] += x.dsum[static_cast<size_t>(t * x.nblk + b)];
  return gs;
}

#ifdef UPG_CBQ8_AVX2

// A row's blocks cut into runs summed in int32, each inside one group: `full` runs of nb blocks
// (nb = 1, 2, 4 or 8), then single blocks for what is left of a group. The runs are grouped in
// segments of whole groups of at most seg_blocks blocks (at least one group), in column order.
struct Chunk {
  int64_t b0, g;
};
struct Segment {
  size_t f0, f1, s0, s1;  // ranges of full and single
};
struct ChunkPlan {
  int nb = 1;
  bool regular = false;  // full[c] == {c * nb, c} for all c and no singles (group = 32 nb | cols)
  std::vector<Chunk> full, single;
  std::vector<Segment> segs;
};
ChunkPlan make_plan(const CodebookView& v, int64_t seg_blocks) {
  ChunkPlan p;
  const int64_t nblk = v.cols / kBlock, per = v.group / kBlock;
  p.nb = per >= kChunk ? kChunk : (per == 4 || per == 2 ? static_cast<int>(per) : 1);
  int64_t seg_start = 0;
  for (int64_t g = 0; g < v.ngroups; ++g) {
    if (g > 0 && std::min(nblk, (g + 1) * per) - seg_start > seg_blocks) {  // close the segment before g
      p.segs.push_back({p.segs.empty() ? 0 : p.segs.back().f1, p.full.size(), p.segs.empty() ? 0 : p.segs.back().s1,
                        p.single.size()});
      seg_start = g * per;
    }
    const int64_t end = std::min(nblk, (g + 1) * per);
    int64_t b = g * per;
    for (; b + p.nb <= end; b += p.nb) p.full.push_back({b, g});
    for (; b < end; ++b) p.single.push_back({b, g});
  }
  p.segs.push_back({p.segs.empty() ? 0 : p.segs.back().f1, p.full.size(), p.segs.empty() ? 0 : p.segs.back().s1,
                    p.single.size()});
  p.regular = per == p.nb && p.single.empty();
  return p;
}

template <int K>
struct Unpack {  // 32 codes of the block at p -> 32 bytes in the order pi_K
  __m256i sh, mask, shuf, s2, sel;
  Unpack() {
    const Perms& P = perms();
    mask = _mm256_set1_epi8(static_cast<char>((1 << K) - 1));
    if constexpr (K == 2) sh = _mm256_setr_epi64x(0, 2, 4, 6);
    if constexpr (K == 4) sh = _mm256_setr_epi64x(0, 0, 4, 4);
    if constexpr (K == 3) {
      shuf = _mm256_load_si256(reinterpret_cast<const __m256i*>(P.k3_shuf));
      sh = _mm256_load_si256(reinterpret_cast<const __m256i*>(P.k3_s1));
      s2 = _mm256_load_si256(reinterpret_cast<const __m256i*>(P.k3_s2));
      sel = _mm256_load_si256(reinterpret_cast<const __m256i*>(P.k3_sel));
    }
  }
  __m256i operator()(const uint8_t* p) const {
    if constexpr (K == 2) {
      int64_t w;
      std::memcpy(&w, p, 8);
      return _mm256_and_si256(_mm256_srlv_epi64(_mm256_set1_epi64x(w), sh), mask);
    } else {
      const __m256i raw = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
      if constexpr (K == 4) return _mm256_and_si256(_mm256_srlv_epi64(raw, sh), mask);
      const __m256i x = _mm256_shuffle_epi8(raw, shuf);
      return _mm256_and_si256(_mm256_blendv_epi8(_mm256_srlv_epi32(x, sh), _mm256_srlv_epi32(x, s2), sel), mask);
    }
  }
};

// Row r's group scales as fp32 (ngroups values, then zeros up to a multiple of 8).
void row_scales(const CodebookView& v, int64_t r, float* sg) {
  const uint8_t* s = v.scales + r * v.ngroups * 2;
  int64_t g = 0;
  for (; g + 8 <= v.ngroups; g += 8)
    _mm256_storeu_ps(sg + g, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(s + 2 * g))));
  if (g < v.ngroups) {
    alignas(16) uint8_t tmp[16] = {};
    std::memcpy(tmp, s + 2 * g, static_cast<size_t>(2 * (v.ngroups - g)));
    _mm256_storeu_ps(sg + g, _mm256_cvtph_ps(_mm_load_si128(reinterpret_cast<const __m128i*>(tmp))));
  }
}

struct Tok {  // the activations of tokens t0.. in the permuted layout
  const Q8Block32* P;
  const uint32_t* M2;
  int64_t n, t0;
};

// One run of NB blocks from b0 (inside one group, scale s) for NT tokens: int32 sums m_b S_b,
// then one conversion and FMA per token. wf(b) gives block b as 32 looked-up weights.
// FN > 0: x.n == FN and x.t0 == 0 known at compile time (simpler addressing, no multiply).
template <int NT, int NB, int FN, class WF>
inline void run_chunk(const WF& wf, int64_t b0, const Tok& x, __m256 s, __m256* acc) {
  __m256i ia[NT];
#pragma GCC unroll 8
  for (int k = 0; k < NB; ++k) {
    const __m256i w = wf(b0 + k);
    const int64_t o = FN > 0 ? (b0 + k) * FN : (b0 + k) * x.n + x.t0;
#pragma GCC unroll 8
    for (int j = 0; j < NT; ++j) {
      const __m256i q = _mm256_load_si256(reinterpret_cast<const __m256i*>(x.P + o + j));
      // m_b in every int16 lane; vbroadcastss is a plain load (no shuffle uop)
      const __m256i m = _mm256_castps_si256(_mm256_broadcast_ss(reinterpret_cast<const float*>(x.M2 + o + j)));
      const __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(w, q), m);
      ia[j] = k == 0 ? p : _mm256_add_epi32(ia[j], p);
    }
  }
#pragma GCC unroll 8
  for (int j = 0; j < NT; ++j) acc[j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(ia[j]), s, acc[j]);
}

// acc[j] (8 lanes) += sum over the runs of segment seg of s_g I_run for token t0 + j. Arguments by
// value and accumulators in locals, so that everything stays in registers (no aliasing via acc).
template <int NT, int NB, int FN, class WF>
inline void row_dot(const WF wf, const ChunkPlan& plan, const Segment& seg, const Tok x, const float* sg, __m256* acc) {
  __m256 a[NT];
#pragma GCC unroll 8
  for (int j = 0; j < NT; ++j) a[j] = acc[j];
  if (plan.regular) {  // the common case: run c = blocks [c nb, c nb + nb) of group c
    for (int64_t c = static_cast<int64_t>(seg.f0); c < static_cast<int64_t>(seg.f1); ++c)
      run_chunk<NT, NB, FN>(wf, c * NB, x, _mm256_broadcast_ss(sg + c), a);
  } else {
    const Chunk* full = plan.full.data();
    const Chunk* single = plan.single.data();
    for (size_t c = seg.f0; c < seg.f1; ++c) run_chunk<NT, NB, FN>(wf, full[c].b0, x, _mm256_broadcast_ss(sg + full[c].g), a);
    for (size_t c = seg.s0; c < seg.s1; ++c)
      run_chunk<NT, 1, FN>(wf, single[c].b0, x, _mm256_broadcast_ss(sg + single[c].g), a);
  }
#pragma GCC unroll 8
  for (int j = 0; j < NT; ++j) acc[j] = a[j];
}

// Sums of the 8 lanes of v[0..NT) as one vector (lane j = sum of v[j]; lanes >= NT are 0).
template <int NT>
inline __m256 hsum_many(const __m256* v) {
  __m256 z[8];
#pragma GCC unroll 8
  for (int j = 0; j < 8; ++j) z[j] = j < NT ? v[j] : _mm256_setzero_ps();
  const __m256 u0 = _mm256_hadd_ps(_mm256_hadd_ps(z[0], z[1]), _mm256_hadd_ps(z[2], z[3]));
  const __m256 u1 = _mm256_hadd_ps(_mm256_hadd_ps(z[4], z[5]), _mm256_hadd_ps(z[6], z[7]));
  return _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20), _mm256_permute2f128_ps(u0, u1, 0x31));
}

// y[t][r] = a D_t sum(acc_j) + lo sum_g s_g gsum[t][g] for t = t0 + j, j < NT.
template <int NT>
inline void finish(const CodebookView& v, const ActQ8& x, const float* gsum, const float* sg, float a, float lo,
                   int64_t r, int64_t t0, __m256* acc, float* y) {
  const int64_t ng8 = (v.ngroups + 7) / 8 * 8;  // sg and gsum rows are zero-padded to this
#pragma GCC unroll 8
  for (int j = 0; j < NT; ++j) {
    const float* gs = gsum + (t0 + j) * ng8;
    __m256 cr = _mm256_setzero_ps();
    for (int64_t g = 0; g < ng8; g += 8) cr = _mm256_fmadd_ps(_mm256_loadu_ps(sg + g), _mm256_loadu_ps(gs + g), cr);
    acc[j] = _mm256_fmadd_ps(acc[j], _mm256_set1_ps(a * x.D[static_cast<size_t>(t0 + j)]), _mm256_mul_ps(cr, _mm256_set1_ps(lo)));
  }
  // One reduction tree for every NT (a one-token pass used another): a token's sum does not depend on how
  // many tokens share the pass.
  alignas(32) float out[8];
  _mm256_store_ps(out, hsum_many<NT>(acc));
  for (int j = 0; j < NT; ++j) y[(t0 + j) * v.rows + r] = out[j];
}

template <class F>
void dispatch_nb(int nb, F&& f) {
  switch (nb) {
    case 2: return f.template operator()<2>();
    case 4: return f.template operator()<4>();
    case 8: return f.template operator()<8>();
    default: return f.template operator()<1>();
  }
}


constexpr int64_t kFusedMax = 8;       // up to this many tokens: matmul_fused, else matmul_tiled
constexpr int64_t kPassNT = 6;         // tokens per pass of matmul_tiled (12 accumulators in registers)
constexpr int64_t kTile = 8;           // rows per tile of matmul_tiled
constexpr int64_t kActL1 = 16 * 1024;  // activation bytes per segment of matmul_tiled (stays in L1)

struct Acc8 {
  __m256 v;
};

// Row r's codes, readable 16 bytes past every block start (k = 3 loads 16 bytes per 12-byte block).
template <int K>
const uint8_t* row_codes(const CodebookView& v, int64_t r, std::vector<uint8_t>& pad) {
  const uint8_t* row = v.q + r * v.row_bytes;
  if (K != 3 || r != v.rows - 1) return row;
  pad.assign(static_cast<size_t>(v.row_bytes + 16), 0);
  std::memcpy(pad.data(), row, static_cast<size_t>(v.row_bytes));
  return pad.data();
}

inline __m256i table(const CodebookQ8Tables& T, const CodebookView& v, int64_t r) {
  return _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(T.u.data() + 16 * (r / v.cb_rows))));
}

// n <= kFusedMax: one row at a time, the unpack fused into the dot of all n tokens. (Two rows at a
// time, sharing the activation loads, was faster with L2-resident weights, slower from DRAM.)
template <int K, int NB>
void matmul_fused(const CodebookView& v, const CodebookQ8Tables& T, const ActQ8& x, const ChunkPlan& plan,
                  const float* gsum, float* y) {
  const int64_t n = x.n;
  const Tok tok{x.perm[K - 2].data(), x.m2.data(), n, 0};
  parallel_for(v.rows, [&](int64_t r_begin, int64_t r_end) {
    thread_local std::vector<float> sg;
    thread_local std::vector<uint8_t> pad;
    sg.assign(static_cast<size_t>((v.ngroups + 7) / 8 * 8), 0.0f);
    const Unpack<K> up;
    for (int64_t r = r_begin; r < r_end; ++r) {
      const __m256i tbl = table(T, v, r);
      const uint8_t* row = row_codes<K>(v, r, pad);
      const size_t tb = static_cast<size_t>(r / v.cb_rows);
      row_scales(v, r, sg.data());
      const auto wf = [tbl, up, row](int64_t b) { return _mm256_shuffle_epi8(tbl, up(row + b * 4 * K)); };
      dispatch_1_to_8(n, [&]<int NT>() {
        __m256 acc[NT];
#pragma GCC unroll 8
        for (int j = 0; j < NT; ++j) acc[j] = _mm256_setzero_ps();
        row_dot<NT, NB, NT>(wf, plan, plan.segs[0], tok, sg.data(), acc);  // n == NT
        finish<NT>(v, x, gsum, sg.data(), T.a[tb], T.lo[tb], r, 0, acc, y);
      });
    }
  });
}

// n > kFusedMax: tiles of kTile rows unpacked to a buffer once; then segment by segment (a
// segment's activations, <= kActL1 bytes, stay in L1 across the tile's rows), each row in passes
// of <= kPassNT tokens, accumulators parked in memory between segments.
template <int K, int NB>
void matmul_tiled(const CodebookView& v, const CodebookQ8Tables& T, const ActQ8& x, const ChunkPlan& plan,
                  const float* gsum, float* y) {
  const int64_t n = x.n, nblk = x.nblk, ng8 = (v.ngroups + 7) / 8 * 8;
  const int64_t passes = (n + kPassNT - 1) / kPassNT, per_pass = (n + passes - 1) / passes;
  const int64_t ntiles = (v.rows + kTile - 1) / kTile;
  parallel_for(ntiles, [&](int64_t tile_begin, int64_t tile_end) {
    thread_local std::vector<float> sg;
    thread_local std::vector<Q8Block32> wb;
    thread_local std::vector<Acc8> accm;
    thread_local std::vector<uint8_t> pad;
    sg.assign(static_cast<size_t>(kTile * ng8), 0.0f);
    wb.resize(static_cast<size_t>(kTile * nblk));
    accm.resize(static_cast<size_t>(kTile * n));
    const Unpack<K> up;
    for (int64_t tile = tile_begin; tile < tile_end; ++tile) {
      const int64_t r0 = tile * kTile, nr = std::min(kTile, v.rows - r0);
      for (int64_t i = 0; i < nr; ++i) {
        const __m256i tbl = table(T, v, r0 + i);
        const uint8_t* row = row_codes<K>(v, r0 + i, pad);
        Q8Block32* w = wb.data() + i * nblk;
        for (int64_t b = 0; b < nblk; ++b)
          _mm256_store_si256(reinterpret_cast<__m256i*>(w + b), _mm256_shuffle_epi8(tbl, up(row + b * 4 * K)));
        row_scales(v, r0 + i, sg.data() + i * ng8);
      }
      std::fill(accm.begin(), accm.end(), Acc8{_mm256_setzero_ps()});
      for (const Segment& seg : plan.segs)
        for (int64_t i = 0; i < nr; ++i) {
          const Q8Block32* w = wb.data() + i * nblk;
          const auto wf = [w](int64_t b) { return _mm256_load_si256(reinterpret_cast<const __m256i*>(w + b)); };
          for (int64_t t0 = 0; t0 < n; t0 += per_pass)
            dispatch_1_to_8(std::min(per_pass, n - t0), [&]<int NT>() {
              if constexpr (NT <= kPassNT)
                row_dot<NT, NB, 0>(wf, plan, seg, Tok{x.perm[K - 2].data(), x.m2.data(), n, t0}, sg.data() + i * ng8,
                                &accm[static_cast<size_t>(i * n + t0)].v);
            });
        }
      for (int64_t i = 0; i < nr; ++i) {
        const size_t tb = static_cast<size_t>((r0 + i) / v.cb_rows);
        for (int64_t t0 = 0; t0 < n; t0 += 8)
          dispatch_1_to_8(std::min<int64_t>(8, n - t0), [&]<int NT>() {
            finish<NT>(v, x, gsum, sg.data() + i * ng8, T.a[tb], T.lo[tb], r0 + i, t0, &accm[static_cast<size_t>(i * n + t0)].v, y);
          });
      }
    }
  });
}

#endif  // UPG_CBQ8_AVX2

}  // namespace

void quantize_act_q8(const float* x, int64_t n, int64_t cols, ActQ8& out) {
  const int64_t nblk = cols / kBlock;
  out.n = n;
  out.cols = cols;
  out.nblk = nblk;
  out.finite = true;
  out.q.resize(static_cast<size_t>(n * cols));
  out.D.resize(static_cast<size_t>(n));
  out.m.resize(static_cast<size_t>(n * nblk));
  out.d.resize(static_cast<size_t>(n * nblk));
  out.bsum.resize(static_cast<size_t>(n * nblk));
  out.dsum.resize(static_cast<size_t>(n * nblk));
  out.m2.resize(static_cast<size_t>(nblk * n));
  std::vector<float> bmax(static_cast<size_t>(nblk));
  for (int64_t t = 0; t < n; ++t) {
    float amax = 0.0f;
    for (int64_t b = 0; b < nblk; ++b) {
      const float* xb = x + t * cols + b * kBlock;
#ifdef UPG_CBQ8_AVX2
      const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
      __m256 mx = _mm256_setzero_ps();
      for (int i = 0; i < 4; ++i) mx = _mm256_max_ps(mx, _mm256_and_ps(_mm256_loadu_ps(xb + 8 * i), absmask));
      __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
      m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
      m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
      bmax[static_cast<size_t>(b)] = _mm_cvtss_f32(m4);
#else
      float bm = 0.0f;
      for (int i = 0; i < kBlock; ++i) bm = std::max(bm, std::fabs(xb[i]));
      bmax[static_cast<size_t>(b)] = bm;
#endif
      amax = std::max(amax, bmax[static_cast<size_t>(b)]);
    }
    // NaN or Inf (max operations may drop a NaN, so look at every value): nothing meaningful to
    // quantize; the token becomes zeros (no undefined conversions below) and the caller falls back.
    bool finite = true;
    for (int64_t c = 0; c < cols; ++c) finite &= std::isfinite(x[t * cols + c]);
    if (!finite) {
      out.finite = false;
      amax = 0.0f;
      std::fill(bmax.begin(), bmax.end(), 0.0f);
    }
    const float D = amax / (127.0f * kMaxMult), inv = amax > 0.0f ? kMaxMult / amax : 0.0f;
    out.D[static_cast<size_t>(t)] = D;
    for (int64_t b = 0; b < nblk; ++b) {
      const size_t i = static_cast<size_t>(t * nblk + b);
      const int m = std::min(kMaxMult, static_cast<int>(std::ceil(bmax[static_cast<size_t>(b)] * inv)));
      const float d = static_cast<float>(m) * D, id = m > 0 ? 1.0f / d : 0.0f;
      const float* xb = x + t * cols + b * kBlock;
      int8_t* qb = out.q.data() + t * cols + b * kBlock;
      int32_t bs = 0;
#ifdef UPG_CBQ8_AVX2
      __m256i qi[4];
      for (int k = 0; k < 4; ++k)  // nearest-even; |x / d| <= 127 (+ rounding), so no clamping is needed
        qi[k] = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(xb + 8 * k), _mm256_set1_ps(id)));
      const __m256i s = _mm256_add_epi32(_mm256_add_epi32(qi[0], qi[1]), _mm256_add_epi32(qi[2], qi[3]));
      __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
      s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4e));
      s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xb1));
      bs = _mm_cvtsi128_si32(s4);
      const __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(qi[0], qi[1]), _mm256_packs_epi32(qi[2], qi[3]));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(qb),
                          _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
#else
      for (int k = 0; k < kBlock; ++k) {
        qb[k] = static_cast<int8_t>(std::nearbyint(xb[k] * id));
        bs += qb[k];
      }
#endif
      out.m[i] = static_cast<uint16_t>(m);
      out.d[i] = d;
      out.bsum[i] = bs;
      out.dsum[i] = d * static_cast<float>(bs);
      out.m2[static_cast<size_t>(b * n + t)] = static_cast<uint32_t>(m) * 0x10001u;
    }
  }
  // The per-k layouts: block-major, tokens interleaved, bytes permuted by pi_k.
  const Perms& P = perms();
  for (int pk = 0; pk < 3; ++pk) {
    std::vector<Q8Block32>& dst = out.perm[pk];
    dst.resize(static_cast<size_t>(nblk * n));
#ifdef UPG_CBQ8_AVX2
    alignas(32) uint8_t idx[32], sel[32];
    for (int p = 0; p < 32; ++p) {
      idx[p] = P.pi[pk][p] & 15;
      sel[p] = P.pi[pk][p] >= 16 ? 0x80 : 0;
    }
    const __m256i vi = _mm256_load_si256(reinterpret_cast<const __m256i*>(idx));
    const __m256i vs = _mm256_load_si256(reinterpret_cast<const __m256i*>(sel));
#endif
    for (int64_t t = 0; t < n; ++t)
      for (int64_t b = 0; b < nblk; ++b) {
        const int8_t* src = out.q.data() + t * cols + b * kBlock;
        int8_t* o = dst[static_cast<size_t>(b * n + t)].v;
#ifdef UPG_CBQ8_AVX2
        const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src));
        const __m256i lo = _mm256_permute4x64_epi64(xv, 0x44), hi = _mm256_permute4x64_epi64(xv, 0xee);
        _mm256_store_si256(reinterpret_cast<__m256i*>(o),
                           _mm256_blendv_epi8(_mm256_shuffle_epi8(lo, vi), _mm256_shuffle_epi8(hi, vi), vs));
#else
        for (int p = 0; p < 32; ++p) o[p] = src[P.pi[pk][p]];
#endif
      }
  }
}

bool codebook_q8_supported(const CodebookView& v) {
  return v.k >= 2 && v.k <= 4 && codebook_packed_in_chunks(v, kBlock);
}

CodebookQ8Tables codebook_q8_tables(const CodebookView& v) {
  CodebookQ8Tables T;
  T.k = v.k;
  T.nblocks = (v.rows + v.cb_rows - 1) / v.cb_rows;
  const int nl = 1 << v.k;
  T.u.assign(static_cast<size_t>(16 * T.nblocks), 0);
  T.a.assign(static_cast<size_t>(T.nblocks), 0.0f);
  T.lo.assign(static_cast<size_t>(T.nblocks), 0.0f);
  for (int64_t B = 0; B < T.nblocks; ++B) {
    const float* L = v.levels + B * nl;
    const float lo = *std::min_element(L, L + nl), hi = *std::max_element(L, L + nl);
    const float a = (hi - lo) / 127.0f;
    T.a[static_cast<size_t>(B)] = a;
    T.lo[static_cast<size_t>(B)] = lo;
    for (int c = 0; c < 16; ++c) {
      const float f = a > 0.0f ? (L[c % nl] - lo) / a : 0.0f;
      const uint8_t u = static_cast<uint8_t>(std::clamp(std::lround(f), 0L, 127L));
      T.u[static_cast<size_t>(16 * B + c)] = u;
      if (c < nl && hi > lo) T.max_level_err = std::max(T.max_level_err, std::fabs(a * u + lo - L[c]) / (hi - lo));
    }
  }
  return T;
}

void codebook_matmul_q8_reference(const CodebookView& v, const CodebookQ8Tables& T, const ActQ8& x, float* y) {
  const std::vector<float> gsum = group_dsums(v, x);
  const int64_t ng8 = (v.ngroups + 7) / 8 * 8, per = v.group / kBlock;
  for (int64_t r = 0; r < v.rows; ++r) {
    const int64_t tb = r / v.cb_rows;
    const uint8_t* u = T.u.data() + 16 * tb;
    for (int64_t t = 0; t < x.n; ++t) {
      float main = 0.0f, corr = 0.0f;
      for (int64_t g = 0; g < v.ngroups; ++g) {
        int64_t I = 0;  // the fast path sums runs of <= 8 blocks in int32 (exact, see the header)
        for (int64_t b = g * per; b < std::min(x.nblk, (g + 1) * per); ++b) {
          const int8_t* q = x.q.data() + t * x.cols + b * kBlock;
          int32_t S = 0;
          for (int j = 0; j < kBlock; ++j) S += u[codebook_code_at(v, r, b * kBlock + j)] * q[j];
          I += int64_t{x.m[static_cast<size_t>(t * x.nblk + b)]} * S;
        }
        const float s = codebook_scale_at(v, r, g);
        main += s * static_cast<float>(I);
        corr += s * gsum[static_cast<size_t>(t * ng8 + g)];
      }
      y[t * v.rows + r] = T.a[static_cast<size_t>(tb)] * x.D[static_cast<size_t>(t)] * main + T.lo[static_cast<size_t>(tb)] * corr;
    }
  }
}

Q8K3Unpack codebook_q8_k3_unpack() {
  const Perms& P = perms();
  return {P.k3_shuf, P.k3_s1, P.k3_s2, P.k3_sel};
}

uint32_t codebook_code_at(const CodebookView& v, int64_t r, int64_t j) {
  const uint8_t* row = v.q + r * v.row_bytes;
  const int64_t bit = j * v.k, byte = bit >> 3;
  uint32_t w = row[byte];
  if (byte + 1 < v.row_bytes) w |= static_cast<uint32_t>(row[byte + 1]) << 8;
  return (w >> (bit & 7)) & ((1u << v.k) - 1);
}

float codebook_scale_at(const CodebookView& v, int64_t r, int64_t g) {
  uint16_t h;
  std::memcpy(&h, v.scales + 2 * (r * v.ngroups + g), 2);
  return f16_to_f32(h);
}

const uint8_t* codebook_q8_pi(int k) { return perms().pi[static_cast<size_t>(k - 2)].data(); }

Q8ActPointers codebook_q8_act_pointers(const ActQ8& x, const CodebookQ8Tables& t) {
  return {x.perm[t.k - 2].data(), x.m2.data(), x.D.data(), t.u.data(), t.a.data(), t.lo.data()};
}

void codebook_matmul_q8(const CodebookView& v, const CodebookQ8Tables& T, const ActQ8& x, float* y) {
  if (x.n <= 0 || v.rows <= 0) return;
  if (v.k >= 2 && v.k <= 4 && simd_level() >= SimdLevel::Avx512Vnni) {
    // The pool's parallel_for is called here, not in the AVX-512 file (codebook_q8_avx512vnni.h).
    const std::vector<float> gsum = group_dsums(v, x, 16);
    const Q8K3Unpack k3 = codebook_q8_k3_unpack();
    const Q8ActPointers p = codebook_q8_act_pointers(x, T);
    parallel_for((v.rows + 1) / 2, [&](int64_t pair_begin, int64_t pair_end) {
      codebook_matmul_q8_avx512vnni_pairs(v, k3, p, x.n, x.nblk, gsum.data(), y, pair_begin, pair_end);
    });
    return;
  }
#ifdef UPG_CBQ8_AVX2
  if (v.k >= 2 && v.k <= 4) {
    const bool fused = x.n <= kFusedMax;
    const ChunkPlan plan = make_plan(v, fused ? x.nblk : std::max<int64_t>(1, kActL1 / (x.n * 36)));
    const std::vector<float> gsum = group_dsums(v, x);
    dispatch_nb(plan.nb, [&]<int NB>() {
      const auto run = [&]<int K>() {
        if (fused) matmul_fused<K, NB>(v, T, x, plan, gsum.data(), y);
        else matmul_tiled<K, NB>(v, T, x, plan, gsum.data(), y);
      };
      if (v.k == 2) run.template operator()<2>();
      else if (v.k == 3) run.template operator()<3>();
      else run.template operator()<4>();
    });
    return;
  }
#endif
  codebook_matmul_q8_reference(v, T, x, y);
}

}  // namespace upg::kernels
