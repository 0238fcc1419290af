#include "codecs/matrix_slice.h"

#include <cstring>
#include <vector>

#include "base/error.h"
#include "codecs/codec_registry.h"
#include "codecs/dense/dense_matrix.h"

namespace upg {

namespace {

// A DenseMatrix over its own bytes (the bytes are a base so they exist before DenseMatrix reads them).
struct OwnedBytes {
  std::vector<uint8_t> bytes;
};
class OwnedDenseMatrix : private OwnedBytes, public DenseMatrix {
 public:
  OwnedDenseMatrix(std::vector<uint8_t> b, TensorDType dtype, int64_t rows, int64_t cols)
      : OwnedBytes{std::move(b)}, DenseMatrix(bytes.data(), dtype, rows, cols) {}
};

// A codec matrix opened over the arrays of its own EncodedTensor; its stored form points into them.
class OwnedCodecMatrix : public WeightMatrix {
 public:
  OwnedCodecMatrix(EncodedTensor t, int64_t rows, int64_t cols)
      : WeightMatrix(rows, cols), t_(std::move(t)), inner_(make_codec(t_.codec)->open(t_.views(), rows, cols, t_.params)) {
    set_stored(std::make_shared<const StoredTensor>(*inner_->stored()));
  }
  void matmul(const float* x, int64_t n, float* y) const override { inner_->matmul(x, n, y); }
  void decode_rows(int64_t r0, int64_t r1, float* out) const override { inner_->decode_rows(r0, r1, out); }
  void decode_rows_bf16(int64_t r0, int64_t r1, uint16_t* out) const override { inner_->decode_rows_bf16(r0, r1, out); }
  std::string codec() const override { return inner_->codec(); }
  size_t stored_bytes() const override { return inner_->stored_bytes(); }

 private:
  EncodedTensor t_;
  std::unique_ptr<WeightMatrix> inner_;
};

}  // namespace

int64_t slice_column_alignment(const WeightMatrix& m) {
  if (dynamic_cast<const DenseMatrix*>(&m)) return 1;
  const StoredTensor* s = m.stored();
  UPG_CHECK(s != nullptr, "a ", m.codec(), " matrix of ", m.rows(), " x ", m.cols(),
            " has no stored form and cannot be cut into shards");
  return make_codec(s->codec)->column_alignment(m.cols(), s->params);
}

std::unique_ptr<WeightMatrix> slice_matrix(const WeightMatrix& m, const MatrixBlock& b) {
  UPG_CHECK(0 <= b.r0 && b.r0 < b.r1 && b.r1 <= m.rows() && 0 <= b.c0 && b.c0 < b.c1 && b.c1 <= m.cols(),
            "slice rows [", b.r0, ", ", b.r1, ") x columns [", b.c0, ", ", b.c1, ") is not a non-empty block of the ",
            m.rows(), " x ", m.cols(), " ", m.codec(), " matrix");
  if (const auto* d = dynamic_cast<const DenseMatrix*>(&m)) {
    const size_t es = tensor_dtype_size(d->dtype()), width = static_cast<size_t>(b.c1 - b.c0) * es;
    std::vector<uint8_t> bytes(static_cast<size_t>(b.r1 - b.r0) * width);
    for (int64_t r = b.r0; r < b.r1; ++r)
      std::memcpy(bytes.data() + static_cast<size_t>(r - b.r0) * width,
                  d->data() + (static_cast<size_t>(r) * static_cast<size_t>(m.cols()) + static_cast<size_t>(b.c0)) * es,
                  width);
    return std::make_unique<OwnedDenseMatrix>(std::move(bytes), d->dtype(), b.r1 - b.r0, b.c1 - b.c0);
  }
  const StoredTensor* s = m.stored();
  UPG_CHECK(s != nullptr, "a ", m.codec(), " matrix of ", m.rows(), " x ", m.cols(),
            " has no stored form and cannot be cut into shards");
  EncodedTensor t = make_codec(s->codec)->slice(s->arrays, m.rows(), m.cols(), s->params, b);
  return std::make_unique<OwnedCodecMatrix>(std::move(t), b.r1 - b.r0, b.c1 - b.c0);
}

}  // namespace upg
