// The one interface through which every layer reads a weight matrix, whatever its codec.
// A WeightMatrix is (rows = out_features) x (cols = in_features), like a PyTorch nn.Linear weight.
// Implementations read their stored arrays in place (usually memory-mapped) and never keep a
// fully expanded fp32 copy: matmul() decodes tiles on the fly. A CUDA backend provides its own
// implementations of the same operations beside these (kernels/cuda), reading the same arrays.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "base/half.h"

namespace upg {

struct StoredTensor;  // codecs/codec.h

class WeightMatrix {
 public:
  WeightMatrix(int64_t rows, int64_t cols) : rows_(rows), cols_(cols) {}
  virtual ~WeightMatrix() = default;
  WeightMatrix(const WeightMatrix&) = delete;
  WeightMatrix& operator=(const WeightMatrix&) = delete;

  int64_t rows() const { return rows_; }
  int64_t cols() const { return cols_; }

  // y (n x rows, row-major) = x (n x cols, row-major) * W^T. n = 1 is decode, n > 1 is prefill.
  // Multithreaded (OpenMP) over output rows; y is fully overwritten.
  virtual void matmul(const float* x, int64_t n, float* y) const = 0;

  // Decodes rows [r0, r1) to fp32, row-major into out ((r1 - r0) x cols). Used for embedding
  // lookups, verification and the plain reference path of every codec.
  virtual void decode_rows(int64_t r0, int64_t r1, float* out) const = 0;

  // Rows [r0, r1) to bf16 ((r1 - r0) x cols, row-major): f32_to_bf16 (round-to-nearest-even) of
  // what decode_rows gives. Codecs override it with a fast multithreaded decoder
  // (kernels/cpu/*_kernels.h); this default goes through decode_rows one row at a time.
  virtual void decode_rows_bf16(int64_t r0, int64_t r1, uint16_t* out) const {
    std::vector<float> row(static_cast<size_t>(cols_));
    for (int64_t r = r0; r < r1; ++r) {
      decode_rows(r, r + 1, row.data());
      for (int64_t c = 0; c < cols_; ++c) out[(r - r0) * cols_ + c] = f32_to_bf16(row[c]);
    }
  }

  // Codec name as written in the file ("bf16", "f16", "f32", "int8", "mdcsr", ...).
  virtual std::string codec() const = 0;
  // Bytes of stored arrays this matrix reads (for bits-per-weight reports).
  virtual size_t stored_bytes() const = 0;

  // The codec's stored form (codec name, resolved params, arrays), set by Codec::open on the matrix
  // it returns, for backends that run the codec from its arrays (backend/cuda); null for matrices
  // made otherwise (DenseMatrix over a Hugging Face tensor describes itself through its class).
  const StoredTensor* stored() const { return stored_.get(); }
  void set_stored(std::shared_ptr<const StoredTensor> s) { stored_ = std::move(s); }

 protected:
  int64_t rows_, cols_;

 private:
  std::shared_ptr<const StoredTensor> stored_;
};

}  // namespace upg
