// The plain codec: a weight matrix stored as bf16, f16 or f32 (as in a Hugging Face checkpoint),
// read in place from the (memory-mapped) tensor bytes; nothing is copied or expanded at load.
//
// matmul() converts tiles of W to fp32 on the fly: for n > 1 (prefill) blocks of 64 rows x 256
// columns are converted once into a small fp32 tile and multiplied against every input row with an
// AVX2/FMA 3x4 register-blocked kernel (scalar fallback when the compiler target lacks AVX2/FMA);
// for n = 1 (decode) each row is converted in registers and summed in exactly that kernel's order
// (per 256-column block one 8-lane FMA chain, 4 blocks side by side, prefetched ahead; masked
// tail; the same reduction), so a token's product does not depend on the other tokens of the
// call, bit for bit (test KernelsDense.ProductOfATokenDoesNotDependOnTheOthers). The thread pool
// splits output rows.
// matmul_reference() is the plain loop the fast path is tested against.
#pragma once
#include <cstdint>
#include <memory>

#include "base/dtype.h"
#include "base/tensor_view.h"
#include "codecs/weight_matrix.h"

namespace upg {

class DenseMatrix : public WeightMatrix {
 public:
  // `data`: rows x cols elements of `dtype` (F32, F16 or BF16), row-major, little-endian, possibly
  // unaligned; must outlive this object. Throws Error for other dtypes.
  DenseMatrix(const uint8_t* data, TensorDType dtype, int64_t rows, int64_t cols);

  void matmul(const float* x, int64_t n, float* y) const override;
  void decode_rows(int64_t r0, int64_t r1, float* out) const override;
  // bf16: a copy; f32/f16: converted and rounded (kernels::f32_to_bf16_n). OpenMP over rows.
  void decode_rows_bf16(int64_t r0, int64_t r1, uint16_t* out) const override;
  std::string codec() const override;
  size_t stored_bytes() const override;

  // Plain reference: y[i][r] = sum_k x[i][k] * W[r][k], accumulated in double, single-threaded.
  void matmul_reference(const float* x, int64_t n, float* y) const;
  TensorDType dtype() const { return dtype_; }
  const uint8_t* data() const { return data_; }

 private:
  const uint8_t* data_;
  TensorDType dtype_;
};

// A WeightMatrix over a 2-D F32/F16/BF16 tensor, in place. Throws Error naming the tensor when it
// is not 2-D or has another dtype.
std::unique_ptr<WeightMatrix> make_weight_matrix(const TensorView& t);

// fp32 copy of a tensor of any float dtype (F32/F16/BF16), for small vectors (norm weights, biases).
// Throws Error naming the tensor for other dtypes.
std::vector<float> tensor_to_f32(const TensorView& t);

}  // namespace upg
