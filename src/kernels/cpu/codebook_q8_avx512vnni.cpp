// AVX-512 VNNI codebook kernel; technique: codebook_q8_avx512vnni.h, integers and accuracy:
// codebook_q8.h. Compiled with AVX-512 flags: to keep AVX-512 instructions out of code the rest of
// the program may share (inline functions and templates the linker merges across files),
// everything here has internal linkage and calls no standard-library or project inline function
// (std::vector members, f16_to_f32, ...): the caller passes plain pointers.
#include "kernels/cpu/codebook_q8_avx512vnni.h"

#include <immintrin.h>

#include "kernels/cpu/codebook_q8_unpack_avx512.h"

namespace upg::kernels {

namespace {
// GCC 12's AVX-512 intrinsic headers trip -Wmaybe-uninitialized (their _mm512_undefined_*
// placeholders); silence it in this file only.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

constexpr int kMaxPass = 8;  // tokens per pass over a row pair (8 int32 + 8 fp32 accumulators)
constexpr int kRun = 8;      // blocks summed in int32 before conversion (< 2^31: codebook_q8.h)

struct Args {
  const CodebookView* v;
  const Q8Block32* perm;  // x.perm[k - 2]: [nblk][n] blocks in the order pi_k
  const uint32_t* m2;     // [nblk][n] m_b * 0x10001
  const float* D;         // [n]
  const float* gsum;      // [n][ng16]
  const uint8_t* u;       // T.u: [table blocks][16]
  const float *a, *lo;    // T.a, T.lo
  int64_t n, nblk, ng16;
  float* y;
};

inline float hsum256(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// 16 of a row's f16 group scales from g0 as fp32 (row_scales: the row's; zero past the last group).
inline __m512 scales16(const CodebookView& v, const uint8_t* row_scales, int64_t g0) {
  const int64_t left = v.ngroups - g0;
  const __mmask16 m = left >= 16 ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << left) - 1);
  return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, row_scales + 2 * g0));
}

// sum_g s[g] gs[g] over row r's group scales (f16) and one token's group sums (zero-padded to 16).
inline float scale_dot(const CodebookView& v, int64_t r, const float* gs) {
  const uint8_t* s = v.scales + r * v.ngroups * 2;
  __m512 acc = _mm512_setzero_ps();
  for (int64_t g = 0; g < v.ngroups; g += 16) acc = _mm512_fmadd_ps(scales16(v, s, g), _mm512_loadu_ps(gs + g), acc);
  return _mm512_reduce_add_ps(acc);
}

// How far ahead of the block being read the codes are prefetched. Decode streams each row pair
// once, in short runs (a 5120-column 3-bit row is 1,920 bytes): the hardware prefetchers alone
// left the loop waiting on the code loads (perf: most cycles at the two code loads).
constexpr int64_t kPrefetchBytes = 768;

// Rows ra and rb (rb == ra for the last row of an odd count), tokens [t0, t0 + NT).
// PER > 0: every group has exactly PER <= kRun blocks (group = 32 PER, cols % group == 0), one run
// per group, unrolled; PER = 0: any group size, runs of <= kRun blocks.
template <int K, int NT, int PER>
void pair_pass(const Args& A, const Unpack2<K>& up, int64_t ra, int64_t rb, int64_t t0) {
  const CodebookView& v = *A.v;
  const uint8_t* pa = v.q + ra * v.row_bytes;
  const uint8_t* pb = v.q + rb * v.row_bytes;
  const uint8_t* sa = v.scales + ra * v.ngroups * 2;
  const uint8_t* sb = v.scales + rb * v.ngroups * 2;
  const int64_t tba = ra / v.cb_rows, tbb = rb / v.cb_rows;
  const __m512i tbl = _mm512_mask_broadcast_i32x4(
      _mm512_broadcast_i32x4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(A.u + 16 * tba))), 0xff00,
      _mm_loadu_si128(reinterpret_cast<const __m128i*>(A.u + 16 * tbb)));
  const bool tail_row = K == 3 && rb == v.rows - 1;
  const int64_t n = A.n, nblk = A.nblk, per = v.group / 32;
  // Prefetch addresses stay inside the matrix's codes (the last pair's run past their end is skipped).
  const uint8_t* pf_end = v.q + v.rows * v.row_bytes - kPrefetchBytes;
  __m512 acc[NT];
#pragma GCC unroll 8
  for (int j = 0; j < NT; ++j) acc[j] = _mm512_setzero_ps();
  // Group g's scale vector (lanes 0-7: row A's s_g, 8-15: row B's) = permutex2var of 16 groups' scales.
  const __m512i idx0 = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 16, 16, 16, 16, 16, 16, 16, 16);
  const __m512i one = _mm512_set1_epi32(1);
  __m512 s16a = _mm512_setzero_ps(), s16b = _mm512_setzero_ps();
  __m512i idx = idx0;
  for (int64_t g = 0; g < v.ngroups; ++g) {
    if ((g & 15) == 0) {
      s16a = scales16(v, sa, g);
      s16b = scales16(v, sb, g);
      idx = idx0;
    }
    const __m512 s = _mm512_permutex2var_ps(s16a, idx, s16b);
    idx = _mm512_add_epi32(idx, one);
    const int64_t gb = g * per;
    if (pa + gb * 4 * K < pf_end) {
      _mm_prefetch(reinterpret_cast<const char*>(pa + gb * 4 * K + kPrefetchBytes), _MM_HINT_T0);
      if (pb != pa) _mm_prefetch(reinterpret_cast<const char*>(pb + gb * 4 * K + kPrefetchBytes), _MM_HINT_T0);
    }
    const int64_t gend = PER > 0 ? gb + PER : ((g + 1) * per < nblk ? (g + 1) * per : nblk);
    for (int64_t b0 = gb; b0 < gend; b0 += kRun) {
      const int64_t b1 = PER > 0 ? gend : (b0 + kRun < gend ? b0 + kRun : gend);
      __m512i ia[NT];
#pragma GCC unroll 8
      for (int j = 0; j < NT; ++j) ia[j] = _mm512_setzero_si512();
#pragma GCC unroll 8
      for (int64_t b = b0; b < b1; ++b) {
        const __m512i w = _mm512_shuffle_epi8(tbl, up(pa + b * 4 * K, pb + b * 4 * K, tail_row && b == nblk - 1));
        const int64_t o = b * n + t0;
#pragma GCC unroll 8
        for (int j = 0; j < NT; ++j) {
          const __m512i q = _mm512_broadcast_i64x4(_mm256_load_si256(reinterpret_cast<const __m256i*>(A.perm + o + j)));
          const __m512i m = _mm512_set1_epi32(static_cast<int>(A.m2[o + j]));
          ia[j] = _mm512_dpwssd_epi32(ia[j], _mm512_maddubs_epi16(w, q), m);
        }
      }
#pragma GCC unroll 8
      for (int j = 0; j < NT; ++j) acc[j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(ia[j]), s, acc[j]);
    }
  }
  // y[t][r] = a_r D_t sum(lanes of r) + lo_r sum_g s_rg gsum[t][g]
  for (int j = 0; j < NT; ++j) {
    const int64_t t = t0 + j;
    const float* gs = A.gsum + t * A.ng16;
    const float ha = hsum256(_mm512_castps512_ps256(acc[j]));
    A.y[t * v.rows + ra] = A.a[tba] * A.D[t] * ha + A.lo[tba] * scale_dot(v, ra, gs);
    if (rb != ra) {
      const float hb = hsum256(_mm512_extractf32x8_ps(acc[j], 1));
      A.y[t * v.rows + rb] = A.a[tbb] * A.D[t] * hb + A.lo[tbb] * scale_dot(v, rb, gs);
    }
  }
}

template <int K, int PER>
void pair_pass_nt(const Args& A, const Unpack2<K>& up, int64_t ra, int64_t rb, int64_t t0, int64_t nt) {
  switch (nt) {
    case 1: return pair_pass<K, 1, PER>(A, up, ra, rb, t0);
    case 2: return pair_pass<K, 2, PER>(A, up, ra, rb, t0);
    case 3: return pair_pass<K, 3, PER>(A, up, ra, rb, t0);
    case 4: return pair_pass<K, 4, PER>(A, up, ra, rb, t0);
    case 5: return pair_pass<K, 5, PER>(A, up, ra, rb, t0);
    case 6: return pair_pass<K, 6, PER>(A, up, ra, rb, t0);
    case 7: return pair_pass<K, 7, PER>(A, up, ra, rb, t0);
    default: return pair_pass<K, 8, PER>(A, up, ra, rb, t0);
  }
}

// Row pairs [p_begin, p_end), on the calling thread.
template <int K>
void run(const Args& A, const Q8K3Unpack& k3, int64_t p_begin, int64_t p_end) {
  const CodebookView& v = *A.v;
  const int64_t passes = (A.n + kMaxPass - 1) / kMaxPass, per_pass = (A.n + passes - 1) / passes;
  const int64_t per = v.group / 32;
  const bool regular = v.cols % v.group == 0;
  const int per_t = regular && (per == 1 || per == 2 || per == 4 || per == 8) ? static_cast<int>(per) : 0;
  const Unpack2<K> up(k3);
  for (int64_t p = p_begin; p < p_end; ++p) {
    const int64_t ra = 2 * p, rb = 2 * p + 1 < v.rows ? 2 * p + 1 : 2 * p;
    for (int64_t t0 = 0; t0 < A.n; t0 += per_pass) {
      const int64_t nt = per_pass < A.n - t0 ? per_pass : A.n - t0;
      switch (per_t) {
        case 1: pair_pass_nt<K, 1>(A, up, ra, rb, t0, nt); break;
        case 2: pair_pass_nt<K, 2>(A, up, ra, rb, t0, nt); break;
        case 4: pair_pass_nt<K, 4>(A, up, ra, rb, t0, nt); break;
        case 8: pair_pass_nt<K, 8>(A, up, ra, rb, t0, nt); break;
        default: pair_pass_nt<K, 0>(A, up, ra, rb, t0, nt); break;
      }
    }
  }
}
}  // namespace

void codebook_matmul_q8_avx512vnni_pairs(const CodebookView& v, const Q8K3Unpack& k3, const Q8ActPointers& p,
                                         int64_t n, int64_t nblk, const float* gsum, float* y, int64_t pair_begin,
                                         int64_t pair_end) {
  const Args A{&v, p.perm, p.m2, p.D, gsum, p.u, p.a, p.lo, n, nblk, (v.ngroups + 15) / 16 * 16, y};
  switch (v.k) {
    case 2: return run<2>(A, k3, pair_begin, pair_end);
    case 3: return run<3>(A, k3, pair_begin, pair_end);
    default: return run<4>(A, k3, pair_begin, pair_end);
  }
}

}  // namespace upg::kernels
