// AVX-512 F+BW chunk decoder of the trellis codec (trellis_kernels.h); compiled with AVX-512 flags,
// called only when simd_level() >= Avx512.
#pragma once
#include <cstdint>

#include "kernels/cpu/trellis_kernels.h"

namespace upg::kernels {

// Decodes W[r][j ..] in chunks of 16 (j % 8 == 0) while a chunk fits before `end` and its 16-byte
// load inside the row; writes out[0 ..] and returns the position where it stopped.
int64_t trellis_decode_chunks_avx512(const TrellisView& v, int64_t r, int64_t j, int64_t end, float* out);

// The chains of trellis_matmul's fused path (trellis_kernels.cpp) for rows r .. r + nr - 1 (nr <= 4)
// and nt tokens (nt <= 4, x rows t of stride ldx), from column 0, 16 weights decoded per step; each
// 16 enter their 8-lane FMA chain as two steps of 8, in column order: the tiled path's chains (one
// per `tile` columns), bit for bit. At each tile's end its chains' sums (hsum8, tile_gemm.cpp's
// reduction) are added to sums[i * nt + t]. Stops where a step's 16-byte load would pass the row's
// end (or at cols) and returns that column j, with acc[(i * nt + t) * 8 .. + 8) = the chains of the
// tile holding j over its columns before j (zeros when j starts it). sc: the rows' group scales as
// fp32 times 1/128 (the code's unit), stride ngroups. tile % 16 == 0.
int64_t trellis_chains_avx512(const TrellisView& v, int64_t r, int nr, const float* sc, const float* x, int64_t ldx,
                              int nt, int64_t tile, float* sums, float* acc);

}  // namespace upg::kernels
