// Integer-dot-product path for the codebook codec (layout: codebook_kernels.h): activations
// quantized to int8, level tables to 7-bit unsigned integers, products by vpmaddubsw, sums kept in
// int32 across a weight group. The file layout is unchanged (no repacking at load); only the
// 2^k-entry level tables are converted, once, when the matrix is opened.
//
// Activations (per token t): D = max|x| / (127 * 4095); per block b of 32 columns an integer
// multiplier m_b = ceil(max_b|x| / (127 D)) in [0, 4095], block scale d_b = m_b D (>= max_b|x| /
// 127, i.e. the usual per-block scale rounded up to 12 bits: at most 1/m_b larger), q = round(x /
// d_b), |q| <= 127, bsum_b = sum q. Levels of table block B: u[c] = round((L[c] - lo) / a) in
// [0, 127], a = (hi - lo) / 127, lo/hi = min/max level, L[c] ~ a u[c] + lo. With s_g the scale of
// group g (G % 32 == 0: a block never straddles groups):
//   y[t][r] = a D sum_g s_g I_g + lo sum_g s_g sum_{b in g} d_b bsum_b,
//   I_g = sum_{b in g} m_b S_b,   S_b = sum_{j in b} u[code_j] q_j.
// Every product is exact: vpmaddubsw pairs u q (|u q| + |u q| <= 32258, no int16 saturation),
// vpmaddwd by m_b (<= 264M per lane), int32 lanes summed over runs of <= 8 blocks of one group
// (< 2^31), each run converted to fp32 once (vcvtdq2ps + vfmadd by s_g).
// Accuracy contract: w^ = s (a u + lo), x^ = q d; |w^ - w| <= |s| a / 2, |x^ - x| <= d / 2, so
// |y - W x| <= sum_j (|s_j| a / 2 |x_j| + |w^_j| d_j / 2) + fp32 rounding (tested exactly so). The
// level error a / 2 = (hi - lo) / 254 is far below the codec's own (level spacing (hi - lo) /
// (2^k - 1) for k <= 4); the activation error is q8_0's.
//
// Fast path (AVX2): a block's 32 codes are unpacked to 32 bytes in a k-specific order pi_k (the
// activations are stored pre-permuted to match, one copy per k, by quantize_act_q8):
//   k = 2: vpbroadcastq of the 8 bytes, vpsrlvq by (0, 2, 4, 6), vpand 3            (2 ALU uops)
//   k = 4: vbroadcasti128 of the 16 bytes, vpsrlvq by (0, 0, 4, 4), vpand 15        (2 ALU uops)
//   k = 3: vbroadcasti128 of the 12 bytes, vpshufb placing each code's byte(s) so that every dword
//          holds codes of two bit offsets (mod 8) only, two vpsrlvd, vpblendvb, vpand 7 (5 ALU uops)
// (no pdep, no repacking), then one vpshufb looks the codes up in the 16-byte u table (a register).
// Per token and block: vpmaddubsw, vpmaddwd by m_b (vbroadcastss load), vpaddd; per run of <= 8
// blocks of one group and token: vcvtdq2ps, vfmadd by s_g. So per 32 weights: n = 1, k = 3:
// ~9.5 ALU uops + 3.5 loads (the fp32 path codebook_matmul: ~20 uops); each further token ~3.5
// ALU uops + 2 loads. Bound on Zen 2/3: vpmaddubsw and vpmaddwd share the two integer-multiply
// pipes, so a token costs >= 1 cycle per 32 weights (measured ~1.3 in an L1 loop, ~1.7 in situ).
//   n <= 8: one row at a time, the unpack fused into the dot of all n tokens (16 accumulators at
//           n = 8 spill a little but beat re-reading a buffer);
//   n > 8:  tiles of 8 rows unpacked once to a buffer, then column segments whose activations
//           (<= 16 KiB) stay in L1 across the tile, passes of <= 6 tokens per row.
// The current thread pool (base/thread_pool.h) over rows (tiles). Without AVX2+FMA+F16C
// codebook_matmul_q8 runs the reference.
// With AVX-512 VNNI (simd_level() >= Avx512Vnni) it runs codebook_q8_avx512vnni.h instead: the same
// integers, two rows per 512-bit register, vpdpwssd in place of vpmaddwd + vpaddd.
// Not supported (codebook_q8_supported false; use codebook_matmul): k = 1 (rare) and k >= 5 (7-bit
// level tables would add an error comparable to the codec's own for 32+ levels), G or cols not
// multiples of 32.
#pragma once
#include <cstdint>
#include <vector>

#include "kernels/cpu/codebook_kernels.h"

namespace upg::kernels {

struct alignas(32) Q8Block32 {
  int8_t v[32];
};

// n tokens' activations quantized to int8 in blocks of 32 columns (see above).
struct ActQ8 {
  int64_t n = 0, cols = 0, nblk = 0;  // nblk = cols / 32
  bool finite = true;                 // false: some x was NaN or Inf (that token was quantized as 0)
  std::vector<int8_t> q;              // [n][cols], natural column order
  std::vector<float> D;               // [n] token scale
  std::vector<uint16_t> m;            // [n][nblk] block multipliers, d_b = m_b * D
  std::vector<float> d;               // [n][nblk] d_b (fp32 of m_b * D)
  std::vector<int32_t> bsum;          // [n][nblk] sum of the block's q
  std::vector<float> dsum;            // [n][nblk] d_b * bsum_b
  std::vector<Q8Block32> perm[3];     // k = 2, 3, 4: [nblk][n] blocks, bytes in the order pi_k
  std::vector<uint32_t> m2;           // [nblk][n] m_b * 0x10001 (the vpmaddwd operand)
};

// x: n x cols fp32, cols % 32 == 0. A token holding NaN or Inf is quantized as zeros and
// out.finite set to false: the caller must then take the fp32 path, which propagates them. Single-threaded (O(n cols)); reuse `out` across calls.
void quantize_act_q8(const float* x, int64_t n, int64_t cols, ActQ8& out);

// Integer level tables: per table block, u[16] (entries 2^k..15 repeat the table), a and lo.
struct CodebookQ8Tables {
  int k = 0;
  int64_t nblocks = 0;
  std::vector<uint8_t> u;    // [nblocks][16]
  std::vector<float> a, lo;  // [nblocks]
  float max_level_err = 0;   // max |a u + lo - L| / (hi - lo) over all tables (<= 1/254)
};

// k in {2, 3, 4}, cols % 32 == 0, group % 32 == 0, cb_rows > 0. Otherwise use codebook_matmul.
bool codebook_q8_supported(const CodebookView& v);
CodebookQ8Tables codebook_q8_tables(const CodebookView& v);

// For the AVX-512 VNNI variant (codebook_q8_avx512vnni.h), which calls no inline code: the k = 3
// unpack constants (32-byte arrays, see above) and plain pointers into ActQ8 / the tables.
struct Q8K3Unpack {
  const uint8_t* shuf;
  const uint32_t *s1, *s2;
  const uint8_t* sel;
};
Q8K3Unpack codebook_q8_k3_unpack();
// Code j of row r, and the scale of group g of row r (f16 to fp32): the scalar references of this
// path and of codebook_i8.h read the layout through these.
uint32_t codebook_code_at(const CodebookView& v, int64_t r, int64_t j);
float codebook_scale_at(const CodebookView& v, int64_t r, int64_t g);
// pi_k (k = 2, 3, 4): byte p of an unpacked block holds the code of column pi_k[p] of the block.
const uint8_t* codebook_q8_pi(int k);
struct Q8ActPointers {
  const Q8Block32* perm;  // x.perm[t.k - 2]
  const uint32_t* m2;
  const float* D;
  const uint8_t* u;
  const float *a, *lo;
};
Q8ActPointers codebook_q8_act_pointers(const ActQ8& x, const CodebookQ8Tables& t);

// y (x.n x rows, row-major) fully overwritten; x.cols == v.cols. Multithreaded (the current thread
// pool, rows).
// Picks the AVX-512 VNNI variant when simd_level() allows it, else AVX2.
void codebook_matmul_q8(const CodebookView& v, const CodebookQ8Tables& t, const ActQ8& x, float* y);
// Same integer arithmetic, plain scalar loops, single-threaded (natural column order).
void codebook_matmul_q8_reference(const CodebookView& v, const CodebookQ8Tables& t, const ActQ8& x, float* y);

}  // namespace upg::kernels
