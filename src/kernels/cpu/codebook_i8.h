// The codebook codec's products on AMX tiles or with AVX-512 VNNI (every token count: prompts, batches
// and decode; one path for all keeps a token's product independent of its batch): int8 levels times int8 activations in
// chunks of 64 columns, one tile multiply (TDPBSSD) per chunk. The file layout is unchanged; only
// the 2^k-entry level tables are converted, once, when the matrix is opened.
//
// Integers (k = 2..6; cols and the group G multiples of 64, so a chunk never straddles groups):
//   levels of table block B:  v[c] = round(L[c] / alpha_B) in [-127, 127], alpha_B = max|L| / 127
//   activations, per token t and chunk c (columns 64c .. 64c + 63):
//                             d[t][c] = max|x| / 127, q = round(x / d) in [-127, 127] (0 when d = 0)
//   C[r][t][c] = sum over the chunk of v[code] q        (exact int32: |C| <= 64 * 127 * 127)
//   y[t][r] = alpha_B(r) * acc,  acc = fma(float(C), s[r][g(c)] * d[t][c], acc) for c = 0, 1, ...
// in exactly that fp32 order, so the AMX kernel, the VNNI kernels and the scalar reference agree bit for bit.
// Accuracy: w^ = s alpha v, |w^ - w| <= |s| alpha / 2; x^ = q d, |x^ - x| <= d / 2 (+ one rounding
// of x / d), so |y - W x| <= sum_j (|s_j| alpha / 2 |x_j| + |w^_j| d_j / 2) + fp32 rounding.
// alpha / 2 = max|L| / 254: at most the step of codebook_q8.h's unsigned tables for symmetric
// levels, twice it for one-sided ones; both far below the codec's own level spacing.
//
// Kernel (codebook_i8_amx.h): per 32 rows, the codes are unpacked once (the AVX-512 unpack of
// codebook_q8_unpack_avx512.h, bytes in the order pi_k of codebook_q8.h, one vpshufb through the
// row's 16-byte signed table) into a buffer of A tiles (16 rows x 64 bytes per chunk); the tokens'
// quantized activations are packed once per call into B tiles (16 rows of 4 columns x 16 tokens,
// the VNNI order TDPBSSD wants, columns permuted by pi_k to match). Tokens go in passes of up to
// 128 (their B tiles stay in L2 across row tiles, their fp32 sums in L1). A step = one chunk x one
// 16-token tile: 2 TDPBSSD (rows 0-15, 16-31) into fresh int32 tiles, stored, and folded into the
// fp32 sums (vcvtdq2ps, vmulps, vfmadd per 16 outputs); the C tiles alternate between two pairs so
// that a step's tile work overlaps the previous step's fold. y is written with one masked scatter
// of 16 tokens per row. Threads: the current ThreadPool over 32-row tiles.
// Used when simd_level() >= SimdLevel::Amx (AMX-INT8 and the kernel's permission, base/
// cpu_features.h) for k <= 4; without AMX, and for k = 5, 6 (with AVX-512 VBMI), AVX-512 VNNI
// kernels compute the same integers (codebook_i8_avx512vnni.h); the reference runs anywhere.
#pragma once
#include <cstdint>
#include <vector>

#include "kernels/cpu/codebook_kernels.h"

namespace upg::kernels {

// Signed level tables: per table block, v[stride()] (entries past 2^k repeat the table) and alpha.
struct CodebookI8Tables {
  int k = 0;
  int64_t nblocks = 0;
  int stride() const { return k <= 4 ? 16 : 64; }
  std::vector<int8_t> v;    // [nblocks][stride()]
  std::vector<float> alpha;  // [nblocks]
  float max_level_err = 0;   // max |alpha v - L| / max|L| over all tables (<= 1/254)
};

// k in 2..6, cols % 64 == 0, group % 64 == 0, cb_rows > 0, rows packed (row_bytes = cols k / 8).
bool codebook_i8_supported(const CodebookView& v);
// Whether codebook_matmul_i8 runs a SIMD kernel for k-bit codes on this CPU at the current SIMD level
// (AMX or AVX-512 VNNI, and for k = 5, 6 AVX-512 VBMI too); else it runs its scalar reference.
bool codebook_i8_has_kernel(int k);
CodebookI8Tables codebook_i8_tables(const CodebookView& v);

// n tokens quantized in chunks of 64 columns, for codes of k bits.
struct ActI8 {
  int64_t n = 0, cols = 0, nch = 0, ntt = 0;  // nch = cols / 64, ntt = ceil(n / 16)
  int k = 0;
  bool finite = true;              // false: some x was NaN or Inf (that token was quantized as 0)
  std::vector<int8_t> q;           // [n][cols], natural column order
  std::vector<float> d;            // [nch][ntt * 16] chunk scales, 0 for the padding tokens
  std::vector<int8_t> tiles;       // [nch][ntt] B tiles of 1 KiB: byte (kk, t, i) at 64 kk + 4 t + i =
                                   // q[16 tt + t][64 c + 32 (p / 32) + pi_k[p % 32]], p = 4 kk + i
                                   // (pi_k of codebook_q8.h for k <= 4, the identity for k >= 5)
  std::vector<int8_t> qp;          // [n][cols]: byte 64 c + p of token t = q[t][64 c + 32 (p / 32) + pi_k[p % 32]]
  std::vector<int32_t> qsum;       // [nch][ntt * 16] sum of the chunk's q (0 for the padding tokens)
};

// x: n x cols fp32, cols % 64 == 0. A token holding NaN or Inf is quantized as zeros and out.finite
// set to false: the caller must then take the fp32 path. Multithreaded (tokens); reuse `out`.
void quantize_act_i8(const float* x, int64_t n, int64_t cols, int k, ActI8& out);

// y (x.n x rows, row-major) fully overwritten; x.cols == v.cols, x.k == v.k, T from v. With AVX-512
// VNNI (>= Avx512Vnni; k = 5, 6: with VBMI) fewer than tile_tokens tokens (default kI8VnniTileTokens)
// take the VNNI few-token kernel, and more the AMX tile kernel where there is one (simd_level() >=
// SimdLevel::Amx, k <= 4; on a 16-core Sapphire Rapids the AMX kernel decoded one token at 0.45x the
// few-token kernel's speed) or else the VNNI tile kernel (codebook_i8_avx512vnni.h), multithreaded;
// otherwise the reference. All give the same bits.
// tile_tokens > 0 overrides the split (tests run every kernel for every token count).
void codebook_matmul_i8(const CodebookView& v, const CodebookI8Tables& T, const ActI8& x, float* y,
                        int64_t tile_tokens = 0);
// The same integers and the same fp32 order, plain loops, single-threaded.
void codebook_matmul_i8_reference(const CodebookView& v, const CodebookI8Tables& T, const ActI8& x, float* y);

}  // namespace upg::kernels
