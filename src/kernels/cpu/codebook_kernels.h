// CPU kernels for the codebook codec (layout: codecs/codebook/codebook_codec.h): k-bit codes
// packed LSB-first per row, f16 scale per group of G codes (G % 8 == 0), fp32 level tables.
//
// Every group starts on a byte boundary (G % 8 == 0), and so does every chunk of 8 codes: chunk
// j of a row is the k bytes at j * k. The AVX2 path unpacks a chunk with one broadcast load, (for
// k > 4) one in-lane byte shuffle (each 32-bit lane gets the two bytes holding its code), one
// variable shift and one mask, then looks the 8 codes up in registers (k <= 3: one permutevar8x32; k = 4, 5, 6:
// 2, 4 or 8 permutes + blends; k >= 7: a gather from the level table), with the table
// pre-multiplied by the group scale (k <= 6) or the result multiplied by it (k >= 7).
//   matvec (n = 1): decode fused with the FMA against x, 4 rows at a time (independent chains),
//     summed in exactly the tiled path's order (per 512-column tile one 8-lane chain per row,
//     masked tail, the same reduction), so a token's product does not depend on the other tokens
//     of the call, bit for bit (test CodecCodebook.Fp32ProductOfATokenDoesNotDependOnTheOthers).
//   matmul (n > 1): tiles decoded to fp32 and multiplied by kernels::gemm_tile_nt (tile_gemm.h).
//   decode_bf16: decode to fp32 row segments then round to bf16, OpenMP over rows.
// With AVX-512 F+BW (codebook_kernels_avx512.cpp, chosen at run time) the n = 1 kernel for k <= 6
// and group % 16 == 0 decodes 16 codes per step, looked up with permutexvar_ps (k <= 4) or
// permutex2var_ps (k = 5, 6), each 16 entering the row's 8-lane chain as two steps of 8.
// Without AVX2 everything runs the scalar reference loops below.
#pragma once
#include <cstdint>

namespace upg::kernels {

struct CodebookView {
  int k = 3;                       // bits per code, 1..8
  int64_t rows = 0, cols = 0;
  int64_t group = 64;              // codes per scale, multiple of 8
  int64_t ngroups = 0;             // ceil(cols / group)
  int64_t row_bytes = 0;           // ceil(cols * k / 8)
  int64_t cb_rows = 0;             // rows per level table (> 0)
  const uint8_t* q = nullptr;      // [rows, row_bytes] packed codes, any alignment
  const uint8_t* scales = nullptr; // f16 [rows, ngroups], any alignment
  const float* levels = nullptr;   // fp32 [ceil(rows / cb_rows), 2^k], 4-byte aligned
};

// The layout the int8-activation paths (codebook_q8.h, codebook_i8.h) need: columns and groups in
// whole chunks of `chunk` columns, rows packed without padding, one scale per group, cb_rows > 0.
// (Out of line: AVX-512-compiled files include this header.)
bool codebook_packed_in_chunks(const CodebookView& v, int64_t chunk);

// W[r][c0 .. c0 + m) to fp32 in out (m values); c0 % 8 == 0.
void codebook_decode_segment(const CodebookView& v, int64_t r, int64_t c0, int64_t m, float* out);
// Scalar reference of the same (code extraction from a 64-bit window, table lookup, scale).
void codebook_decode_segment_reference(const CodebookView& v, int64_t r, int64_t c0, int64_t m, float* out);

// y (n x rows) = x (n x cols) * W^T, y fully overwritten. Multithreaded.
void codebook_matmul(const CodebookView& v, const float* x, int64_t n, float* y);
// Plain single-threaded reference: reference decode of each row, then fp32 dot products.
void codebook_matmul_reference(const CodebookView& v, const float* x, int64_t n, float* y);

// Rows [r0, r1) to bf16 (round-to-nearest-even of the fp32 decode), row-major. Multithreaded.
void codebook_decode_bf16(const CodebookView& v, int64_t r0, int64_t r1, uint16_t* out);

}  // namespace upg::kernels
