// int8: symmetric 8-bit integers with one scale per group of `group` consecutive weights of a
// row (group = 0: one scale per row).
//
// Arrays (G = group or cols when group = 0; ng = ceil(cols / G)):
//   qweight I8 [rows, cols]        q in [-127, 127]
//   scales  F16|F32 [rows, ng]     W[r][c] = q[r][c] * scales[r][c / G]
// Params: "group" (0 or 1..cols, default 128), "scale_dtype" ("f16" default, or "f32").
// Bits per weight: 8 + 16/G (f16 scales).
#pragma once
#include "codecs/codec.h"

namespace upg {

class Int8Codec : public Codec {
 public:
  std::string name() const override { return "int8"; }

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

}  // namespace upg
