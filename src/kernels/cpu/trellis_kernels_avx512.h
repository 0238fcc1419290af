// AVX-512 F+BW chunk decoder of the trellis codec (trellis_kernels.h); compiled with AVX-512 flags,
// called only when simd_level() >= Avx512.
#pragma once
#include <cstdint>

#include "kernels/cpu/trellis_kernels.h"

namespace upg::kernels {

// Decodes W[r][j ..] in chunks of 16 (j % 8 == 0) while a chunk fits before `end` and its 16-byte
// load inside the row; writes out[0 ..] and returns the position where it stopped.
int64_t trellis_decode_chunks_avx512(const TrellisView& v, int64_t r, int64_t j, int64_t end, float* out);

}  // namespace upg::kernels
