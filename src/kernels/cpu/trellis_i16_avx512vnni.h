// The AVX-512 VNNI kernel of trellis_i16.h (its arithmetic there). Plain C++ header; the .cpp is
// compiled with AVX-512 VNNI flags (cmake/UpgSimdFlags.cmake).
#pragma once
#include <cstdint>

#include "kernels/cpu/trellis_kernels.h"

namespace upg::kernels {

// Plain pointers into an ActI16.
struct TrellisI16Act {
  const int32_t* pair;   // [n][cols / 2]
  const float* d;        // [n][nch]
  const int32_t* qsum;   // [n][nch]
  int64_t n, nch, chunk;
};

// Columns per block of the kernel (a multiple of every chunk size), rows per call at most.
constexpr int64_t kTrellisI16Block = 512, kTrellisI16Rows = 4;
// int32 of scratch trellis_i16_vnni_rows needs for n tokens.
constexpr int64_t trellis_i16_scratch(int64_t n) { return kTrellisI16Rows * 17 * n + kTrellisI16Rows * kTrellisI16Block / 2 + 64; }

// Rows r .. r + nr - 1 (nr <= kTrellisI16Rows) of y (n x v.rows) overwritten; sc: those rows' f16 scales as fp32
// ([nr][ngroups]); buf: trellis_i16_scratch(n) int32 of scratch.
void trellis_i16_vnni_rows(const TrellisView& v, const TrellisI16Act& x, const float* sc, float* y, int64_t r, int nr,
                           int32_t* buf);

}  // namespace upg::kernels
