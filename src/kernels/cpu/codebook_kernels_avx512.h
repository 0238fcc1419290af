// The AVX-512 (F + BW + VL) variant of the codebook n = 1 row kernel. This header is plain C++;
// its .cpp is the only file compiled with -mavx512f -mavx512bw -mavx512vl (CMakeLists.txt), and
// codebook_kernels.cpp calls it only when simd_level() >= SimdLevel::Avx512 (base/cpu_features.h).
#pragma once
#include <cstdint>

#include "kernels/cpu/codebook_kernels.h"

namespace upg::kernels {

// sum_c W[r][c] * x[c] for one row with k <= 6 and group % 16 == 0: `levels` = the row's level
// table (2^k floats), `row` = its codes, readable 16 bytes past any chunk start, `sc` = its group
// scales as fp32.
float codebook_row_dot_avx512(const CodebookView& v, const float* levels, const uint8_t* row, const float* sc,
                              const float* x);

}  // namespace upg::kernels
