// CPU kernels for the mdcsr sparse codec (layout: codecs/mdcsr/mdcsr_codec.h): per row, the
// escape-coded column gaps are decoded to int32 columns (a plain prefix sum when the row has no
// escape byte, i.e. its delta byte count equals its entry count), the values to fp32
// (int8 * row scale, 8 at a time with AVX2, or levels[u16] * row scale); then each input row is
// gathered at those columns (AVX2 vgatherdps, 8 entries at a time) and dotted with the values.
// OpenMP over rows (dynamic: rows differ in entry count). Scalar loops without AVX2.
#pragma once
#include <cstdint>

namespace upg::kernels {

struct MdcsrView {
  int64_t rows = 0, cols = 0;
  const uint8_t* row_ptr = nullptr;    // U32 [2, rows + 1] (validated by MdcsrMatrix)
  const uint8_t* col_delta = nullptr;  // U8 [D]
  const uint8_t* values = nullptr;     // I8 [nnz] or U16 [nnz] (levels mode)
  const uint8_t* scales = nullptr;     // F32 [rows]
  const uint8_t* levels = nullptr;     // F32 [L] in levels mode, else null
};

// y (n x rows) += x (n x cols) * S^T. Multithreaded.
void mdcsr_add_matmul(const MdcsrView& v, const float* x, int64_t n, float* y);
// Plain single-threaded reference of the same.
void mdcsr_add_matmul_reference(const MdcsrView& v, const float* x, int64_t n, float* y);
// Rows [r0, r1) densified to bf16 (zeros where no entry). Multithreaded.
void mdcsr_decode_bf16(const MdcsrView& v, int64_t r0, int64_t r1, uint16_t* out);

}  // namespace upg::kernels
