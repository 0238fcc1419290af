// trellis matrix: validation, reference decode (bit by bit); matmul and decode-to-bf16 through the
// CPU kernels of kernels/cpu/trellis_kernels.h. Layout: see trellis_codec.h.
#include <cmath>

#include "base/thread_pool.h"
#include "codecs/codec_util.h"
#include "kernels/trellis_code.h"
#include "codecs/trellis/trellis_codec.h"
#include "kernels/cpu/tile_gemm.h"
#include "kernels/cpu/trellis_kernels.h"

namespace upg {

namespace {

const char* kName = "trellis";

class TrellisMatrix : public WeightMatrix {
 public:
  TrellisMatrix(const EncodedArrays& a, int64_t rows, int64_t cols, const CodecParams& p)
      : WeightMatrix(rows, cols), l_(read_trellis_layout(p, cols)) {
    q_ = require_array(a, kName, "qweight", DType::U8, {rows, l_.row_bytes}).data;
    s_ = require_array(a, kName, "scales", DType::F16, {rows, l_.ngroups}).data;
    for (int64_t i = 0; i < rows * l_.ngroups; ++i)
      UPG_CHECK(std::isfinite(load_f16(s_, i)), kName, ": array 'scales' entry ", i, " is not finite");
  }

  // Reference: reads each state bit by bit.
  void decode_rows(int64_t r0, int64_t r1, float* out) const override {
    for (int64_t r = r0; r < r1; ++r) {
      const uint8_t* row = q_ + r * l_.row_bytes;
      for (int64_t j = 0; j < cols_; ++j) {
        uint32_t s = 0;
        for (int t = 0; t < l_.l; ++t) {
          const int64_t bit = j * l_.k + t;
          s = (s << 1) | ((row[bit >> 3] >> (7 - (bit & 7))) & 1u);
        }
        out[(r - r0) * cols_ + j] = load_f16(s_, r * l_.ngroups + j / l_.group) * trellis::code(s);
      }
    }
  }

  void matmul(const float* x, int64_t n, float* y) const override { kernels::trellis_matmul(view(), x, n, y); }

  void decode_rows_bf16(int64_t r0, int64_t r1, uint16_t* out) const override {
    UPG_CHECK(0 <= r0 && r0 <= r1 && r1 <= rows_, kName, ": rows [", r0, ", ", r1, ") out of range [0, ", rows_, ")");
    parallel_for_dynamic(r1 - r0, 4, [&](int64_t a, int64_t b) {
      std::vector<float> row(static_cast<size_t>(cols_));
      for (int64_t i = a; i < b; ++i) {
        kernels::trellis_decode_segment(view(), r0 + i, 0, cols_, row.data());
        kernels::f32_to_bf16_n(row.data(), out + i * cols_, cols_);
      }
    });
  }

  std::string codec() const override { return kName; }
  size_t stored_bytes() const override { return static_cast<size_t>(rows_ * l_.row_bytes + rows_ * l_.ngroups * 2); }

  kernels::TrellisView view() const {
    kernels::TrellisView v;
    v.k = l_.k;
    v.l = l_.l;
    v.rows = rows_;
    v.cols = cols_;
    v.group = l_.group;
    v.ngroups = l_.ngroups;
    v.row_bytes = l_.row_bytes;
    v.q = q_;
    v.scales = s_;
    return v;
  }

 private:
  TrellisLayout l_;
  const uint8_t *q_, *s_;
};

}  // namespace

std::unique_ptr<WeightMatrix> TrellisCodec::open_core(const EncodedArrays& arrays, int64_t rows, int64_t cols,
                                                      const CodecParams& params) const {
  check_dims(kName, rows, cols);
  return std::make_unique<TrellisMatrix>(arrays, rows, cols, params);
}

// A block: weight j of a row is the window at stream bit j K, so the block's columns [c0, c1) are
// the stream from bit c0 K (a byte: c0 is a multiple of the group, itself a multiple of 8) for
// L + (c1 - c0 - 1) K bits, the bits after them zeroed; its groups' scales.
EncodedTensor TrellisCodec::slice_core(const EncodedArrays& arrays, int64_t rows, int64_t cols,
                                       const CodecParams& params, const MatrixBlock& b) const {
  const TrellisLayout l = read_trellis_layout(params, cols);
  const int64_t bits = l.l + (b.c1 - b.c0 - 1) * l.k, first = b.c0 * l.k / 8, nbytes = (bits + 7) / 8;
  EncodedTensor t;
  t.params = params;
  Array q = slice_array_2d(require_array(arrays, kName, "qweight", DType::U8, {rows, l.row_bytes}), b.r0, b.r1,
                           first, first + nbytes);
  if (bits % 8 != 0)
    for (int64_t r = 0; r < b.r1 - b.r0; ++r) q.bytes[(r + 1) * nbytes - 1] &= static_cast<uint8_t>(0xFF00 >> (bits % 8));
  t.arrays["qweight"] = std::move(q);
  t.arrays["scales"] = slice_array_2d(require_array(arrays, kName, "scales", DType::F16, {rows, l.ngroups}), b.r0,
                                      b.r1, b.c0 / l.group, (b.c1 + l.group - 1) / l.group);
  return t;
}

int64_t TrellisCodec::column_alignment_core(int64_t cols, const CodecParams& params) const {
  return read_trellis_layout(params, cols).group;
}

}  // namespace upg
