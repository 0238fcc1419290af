// The AVX-512 VNNI kernels of the codebook path in codebook_i8.h, for CPUs without AMX: the same
// integers C (exact int32 per 64-column chunk) and the same fp32 order as its reference, so they
// equal it, and the AMX kernel, bit for bit. vpdpbusd multiplies unsigned by signed bytes, so one
// operand is shifted by 128 and the shift taken out exactly in int32:
//   few tokens (n < kI8VnniTileTokens): unsigned levels u = v + 128, C = sum u q - 128 sum q
//     (sum q per token and chunk: ActI8::qsum). Per 16 rows (8 pairs; 8 rows for 3-4 tokens, so the
//     int32 sums stay in registers; the q8 kernels' layout: one
//     block of 32 codes of row 2p in the low 256 bits, of row 2p + 1 in the high ones, the code
//     unpack of codebook_q8_unpack_avx512.h), per block and token one vpdpbusd against the token's
//     32 bytes broadcast to both halves (ActI8::qp, the order pi_k); per chunk the 8 pairs' lane
//     sums reduced to 16 row sums in one transposing tree (22 instructions), then the fp32 fold; the
//     next unit's codes are prefetched a slice per chunk.
//   many tokens: unsigned activations q + 128 (the B tiles of ActI8 with the top bit flipped),
//     C = sum v (q + 128) - 128 sum v. Per 16 rows the codes are unpacked once into signed levels
//     (ActI8-tile order: row r's chunk c as 64 bytes in the order pi_k) with sum v per row and chunk;
//     then per 8 rows and 16-token tile one vpdpbusd per row and 4 columns, the row's 4 levels an
//     embedded broadcast and the tile's 16 tokens x 4 bytes one 64-byte load shared by the 8 rows;
//     the int32 sums of a chunk folded into fp32 sums kept in registers.
// Both give the same bits (tested against the reference for every token count in
// test_codebook_i8), so a token's product does not depend on how many came with it. The kernels are
// templates over the code unpack (codebook_i8_avx512vnni_kernels.h): the one above for k = 2, 3, 4,
// and for k = 5, 6 (32 or 64 levels, too many for vpshufb) an AVX-512 VBMI one: codes in natural
// column order (ActI8 with pi_k the identity) from vpermb + vpmultishiftqb, the levels from vpermb
// (k = 5: both rows' 32 levels in one register) or vpermt2b (k = 6: two registers).
// This header is plain C++; its .cpp is compiled with AVX-512 VNNI flags (cmake/UpgSimdFlags.cmake),
// has internal linkage only and calls no inline function of the standard library or the project.
#pragma once
#include <cstddef>
#include <cstdint>

#include "kernels/cpu/codebook_kernels.h"
#include "kernels/cpu/codebook_q8.h"

namespace upg::kernels {

// Token counts from which the tile kernel is used (UPG_CPU_I8_TILE_TOKENS overrides; measurements).
constexpr int64_t kI8VnniTileTokens = 5;

// Plain pointers into an ActI8 (codebook_i8.h).
struct ActI8Pointers {
  const int8_t* tiles;   // [nch][ntt] B tiles
  const int8_t* qp;      // [n][cols] q in the tiles' column order (pi_k per 32 columns)
  const float* d;        // [nch][ntt * 16]
  const int32_t* qsum;   // [nch][ntt * 16] sum of q over the chunk
  int64_t n, ntt;
};

// Bytes of the per-thread scratch buffer for rows of `cols` columns (64-aligned).
size_t codebook_i8_vnni_scratch_bytes(int64_t cols, int64_t ngroups);

// 16-row units [unit_begin, unit_end) (rows 16 u .. 16 u + 15, clipped to v.rows) of y (n x v.rows)
// overwritten, on the calling thread; tile_tokens: from how many tokens the tile kernel runs.
// levels, alpha: CodebookI8Tables::v and alpha; scratch: codebook_i8_vnni_scratch_bytes bytes,
// 64-byte aligned. Requirements: codebook_i8_supported(v), v.k <= 4.
void codebook_i8_vnni_units(const CodebookView& v, const Q8K3Unpack& k3, const int8_t* levels, const float* alpha,
                            const ActI8Pointers& x, int64_t tile_tokens, float* y, uint8_t* scratch,
                            int64_t unit_begin, int64_t unit_end);
// The same for v.k = 5, 6 (codebook_i8_avx512vbmi.cpp, which also needs AVX-512 VBMI: the codes in
// natural column order unpacked with vpermb + vpmultishiftqb, the 32- or 64-entry tables looked up
// with vpermb / vpermt2b; levels with CodebookI8Tables::stride() = 64).
void codebook_i8_vbmi_units(const CodebookView& v, const int8_t* levels, const float* alpha, const ActI8Pointers& x,
                            int64_t tile_tokens, float* y, uint8_t* scratch, int64_t unit_begin, int64_t unit_end);

}  // namespace upg::kernels
