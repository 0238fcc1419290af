// The AVX-512 (F + BW + VL) decode of the codebook n = 1 kernel (16 codes per step). This header is plain C++;
// its .cpp is the only file compiled with -mavx512f -mavx512bw -mavx512vl (CMakeLists.txt), and
// codebook_kernels.cpp calls it only when simd_level() >= SimdLevel::Avx512 (base/cpu_features.h).
#pragma once
#include <cstdint>

#include "kernels/cpu/codebook_kernels.h"

namespace upg::kernels {

// The chains of the one-token path of codebook_matmul (codebook_kernels.cpp) for nr rows (nr <= 4;
// k <= 6, group % 16 == 0), from column 0, 16 codes decoded per step; each 16 weights enter the
// row's 8-lane FMA chain as two steps of 8, in column order: the tiled path's chains (one per `tile`
// columns), bit for bit. At each tile's end its chains' sums (hsum8, tile_gemm.cpp's reduction) are
// added to sums[i]. Stops where fewer than 16 columns are left (the row's end) and returns that
// column j, with acc[8 i .. 8 i + 8) = row i's chain of the tile holding j over its columns before
// j (zeros when j starts it). levels[i]: row i's level table (2^k floats); row[i]: its codes,
// readable 16 bytes past any chunk start; sc: the rows' group scales as fp32, stride ngroups.
// tile % 16 == 0.
int64_t codebook_chains_avx512(const CodebookView& v, int nr, const float* const* levels, const uint8_t* const* row,
                               const float* sc, const float* x, int64_t tile, float* sums, float* acc);

}  // namespace upg::kernels
