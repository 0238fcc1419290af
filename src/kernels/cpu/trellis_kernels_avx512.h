// AVX-512 F+BW chunk decoder of the trellis codec (trellis_kernels.h); compiled with AVX-512 flags,
// called only when simd_level() >= Avx512.
#pragma once
#include <cstdint>

#include "kernels/cpu/trellis_kernels.h"

namespace upg::kernels {

// Decodes W[r][j ..] in chunks of 16 (j % 8 == 0) while a chunk fits before `end` and its 16-byte
// load inside the row; writes out[0 ..] and returns the position where it stopped.
int64_t trellis_decode_chunks_avx512(const TrellisView& v, int64_t r, int64_t j, int64_t end, float* out);

// acc[t] = sum over j < J of W[r][j] * x[t * ldx + j] for t < nt (1..4), J the returned position
// (where a 16-byte load would pass the row's end, or cols rounded down to 16). sc: row r's group
// scales as fp32, already multiplied by 1/128 (the code's unit).
int64_t trellis_rows_dot_avx512(const TrellisView& v, int64_t r, const float* sc, const float* x, int64_t ldx, int nt,
                                float* acc);

}  // namespace upg::kernels
