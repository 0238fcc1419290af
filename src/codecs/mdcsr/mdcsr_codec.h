// mdcsr: a sparse codec. Entries whose magnitude falls under a threshold (or outside the kept
// fraction) are dropped; kept entries are stored row by row.
//
// Arrays (nnz = number of kept entries, D = bytes of the delta stream):
//   row_ptr   U32 [2, rows + 1]  row_ptr[0][r] = index in `values` of row r's first entry,
//                                row_ptr[1][r] = index in `col_delta` of row r's first byte;
//                                both start at 0, never decrease, end at nnz and D.
//   col_delta U8  [D]            column gaps, row by row. Within a row prev = -1, and each kept
//                                column c has gap = c - prev >= 1, written as: while gap > 255 emit
//                                byte 0 ("add 255 and read the next byte") and subtract 255; then
//                                emit gap (1..255). So gap 255 -> [255], 256 -> [0, 1], 600 ->
//                                [0, 0, 90]. A row's bytes must decode to exactly its entry count.
//   values    I8  [nnz]          value = values[i] * scales[r]            (values = "int8"), or
//             U16 [nnz]          value = levels[values[i]] * scales[r]    (values = "levels")
//   scales    F32 [rows]         per-row scale
//   levels    F32 [L]            only with values = "levels" (L <= 65536; every index < L)
// Params: "keep_fraction" (0..1, default 0.1) or "threshold" (absolute, keeps |w| > threshold),
// "values": "int8" | "levels", "num_levels" (levels mode, default 256).
#pragma once
#include <memory>
#include <vector>

#include "codecs/codec.h"
#include "kernels/cpu/sparse_kernels.h"

namespace upg {

// The block b of a stored mdcsr tensor (rows x cols) as an mdcsr tensor of its own (Codec::slice;
// also the sparse part of the dense-and-sparse option). params: as stored ("values", ...).
EncodedTensor mdcsr_slice(const EncodedArrays& arrays, int64_t rows, int64_t cols, const CodecParams& params,
                          const MatrixBlock& b);

class MdcsrCodec : public Codec {
 public:
  std::string name() const override { return "mdcsr"; }

 protected:
  EncodedTensor encode_core(const float* W, int64_t rows, int64_t cols, const CodecParams& params,
                            const float* importance) const override;
  std::unique_ptr<WeightMatrix> open_core(const EncodedArrays& arrays, int64_t rows, int64_t cols,
                                          const CodecParams& params) const override;
  EncodedTensor slice_core(const EncodedArrays& arrays, int64_t rows, int64_t cols, const CodecParams& params,
                           const MatrixBlock& b) const override {
    return mdcsr_slice(arrays, rows, cols, params, b);
  }
  int64_t column_alignment_core(int64_t, const CodecParams&) const override { return 1; }
  bool supports_shared_options() const override { return false; }
  std::vector<std::string> row_scale_arrays() const override { return {"scales"}; }
};

// Kept entries of a matrix: row r owns entries [row_start[r], row_start[r+1]) with strictly
// increasing columns.
struct SparseEntries {
  std::vector<int64_t> row_start;  // rows + 1
  std::vector<int32_t> col;
  std::vector<float> val;
};

// Encodes exactly the given entries (used by the dense-and-sparse option for outliers).
// params: "values" and "num_levels" as above; returns resolved params.
EncodedTensor mdcsr_encode_entries(int64_t rows, int64_t cols, const SparseEntries& e,
                                   const CodecParams& params, const float* importance);

class MdcsrMatrix : public WeightMatrix {
 public:
  // Validates the arrays (see the layout above); throws Error naming the array.
  MdcsrMatrix(const EncodedArrays& arrays, int64_t rows, int64_t cols, const CodecParams& params);
  void matmul(const float* x, int64_t n, float* y) const override;
  void decode_rows(int64_t r0, int64_t r1, float* out) const override;
  void decode_rows_bf16(int64_t r0, int64_t r1, uint16_t* out) const override;
  std::string codec() const override { return "mdcsr"; }
  size_t stored_bytes() const override;
  // y (n x rows) += x (n x cols) * S^T: the sparse product without densifying.
  void add_matmul(const float* x, int64_t n, float* y) const;
  int64_t nnz() const { return nnz_; }

 private:
  float value(int64_t i, float scale) const;
  kernels::MdcsrView view() const;  // the arrays as the CPU kernels (sparse_kernels.h) read them
  const uint8_t *row_ptr_, *col_delta_, *values_, *scales_, *levels_ = nullptr;
  int64_t nnz_ = 0, delta_bytes_ = 0, num_levels_ = 0;
  bool use_levels_ = false;
};

}  // namespace upg
