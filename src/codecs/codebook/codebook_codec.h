// codebook: k-bit indices (k = 1..8; 2, 3, 4 are the usual choices) into a small table of levels,
// with one scale per group of `group` consecutive weights of a row.
//
// Arrays (G = group, ng = ceil(cols / G), RB = ceil(cols * k / 8), CB = codebook_rows or rows
// when codebook_rows = 0, nb = ceil(rows / CB)):
//   qweight  U8  [rows, RB]      row r's codes as one little-endian bit stream: code j occupies
//                                stream bits [j*k, j*k + k), bit b of the stream is bit (b % 8) of
//                                byte b / 8, and the code's bit t is stream bit j*k + t (LSB
//                                first). Pad bits at the end of a row are 0 and ignored.
//   scales   F16 [rows, ng]      per-group scale (may be negative: mirrors an asymmetric table)
//   codebook F32 [nb, 2^k]       levels, ascending, for rows [b*CB, (b+1)*CB)
//   W[r][j] = scales[r][j / G] * codebook[r / CB][code(r, j)]
// Params: "bits" (1..8, default 3), "group" (8..cols, multiple of 8, default 64), "levels":
//   "fitted"   importance-weighted Lloyd k-means of the scaled weights (per codebook block),
//              alternated with scale fitting for "lloyd_iters" rounds (default 3);
//   "gaussian" Lloyd-Max levels of N(0, 1) (fixed, normalised to max 1);
//   "prime"    the prime LUT of levels.h (prime_levels(bits, "prime_offset"), default offset 0).
// The table is always stored, so a decoder never needs the generator. Each group's scale is
// chosen to minimise the importance-weighted squared error (a search over clipping ratios, each
// followed by the closed-form least-squares scale for its codes), rounded to f16, and the codes
// are reassigned for the rounded scale.
// Bits per weight: k + 16/G + 32 * 2^k / (CB * cols).
#pragma once
#include "codecs/codec.h"

namespace upg {

class CodebookCodec : public Codec {
 public:
  std::string name() const override { return "codebook"; }

 protected:
  EncodedTensor encode_core(const float* W, int64_t rows, int64_t cols, const CodecParams& params,
                            const float* importance) const override;
  std::unique_ptr<WeightMatrix> open_core(const EncodedArrays& arrays, int64_t rows, int64_t cols,
                                          const CodecParams& params) const override;
  EncodedTensor slice_core(const EncodedArrays& arrays, int64_t rows, int64_t cols, const CodecParams& params,
                           const MatrixBlock& b) const override;
  int64_t column_alignment_core(int64_t cols, const CodecParams& params) const override;
  std::vector<std::string> row_scale_arrays() const override { return {"scales"}; }
};

// Resolved layout of a codebook tensor (shared by the encoder and the matrix).
struct CodebookLayout {
  int k = 3;
  int64_t group = 64, ngroups = 0, row_bytes = 0, cb_rows = 0, nblocks = 1;
  std::string levels = "fitted";
  int64_t prime_offset = 0, lloyd_iters = 3;
};
CodebookLayout read_codebook_layout(const CodecParams& p, int64_t rows, int64_t cols);

// Builds a codebook tensor from codes chosen elsewhere (GPTQ in src/convert/, random codes in
// `upg synth`): codes rows x cols (each < 2^bits, one byte per code), scales rows x ngroups
// (rounded to f16 here), levels nblocks x 2^bits (ascending). `params` as for encode (bits, group,
// levels, codebook_rows, ...); the result carries the same resolved params encode would.
// Throws Error when a code is out of range. (codebook_pack.cpp)
EncodedTensor codebook_from_codes(const CodecParams& params, int64_t rows, int64_t cols, const uint8_t* codes,
                                  const float* scales, const float* levels);

}  // namespace upg
