// The AVX2 kernel of trellis_i16.h (its arithmetic there), for CPUs without AVX-512 VNNI.
#pragma once
#include <cstdint>

#include "kernels/cpu/trellis_i16_avx512vnni.h"  // TrellisI16Act, kTrellisI16Block / Rows, the scratch size

namespace upg::kernels {

// As trellis_i16_vnni_rows: rows r .. r + nr - 1 (nr <= kTrellisI16Rows) of y (n x v.rows)
// overwritten; sc: those rows' f16 scales as fp32 ([nr][ngroups]); buf: trellis_i16_scratch(n) int32.
void trellis_i16_avx2_rows(const TrellisView& v, const TrellisI16Act& x, const float* sc, float* y, int64_t r, int nr,
                           int32_t* buf);

}  // namespace upg::kernels
