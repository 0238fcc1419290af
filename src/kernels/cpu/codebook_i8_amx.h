// The AMX tile kernel of the codebook path in codebook_i8.h (integers, order of the fp32 sums and
// the technique are described there). This header is plain C++; its .cpp is the only file compiled
// with -mamx-tile -mamx-int8 (CMakeLists.txt), has internal linkage only and calls no inline
// function of the standard library or the project, and codebook_matmul_i8 calls it only when
// simd_level() >= SimdLevel::Amx.
#pragma once
#include <cstddef>
#include <cstdint>

#include "kernels/cpu/codebook_kernels.h"
#include "kernels/cpu/codebook_q8.h"

namespace upg::kernels {

// Bytes of the per-thread scratch buffer the kernel needs for rows of `cols` columns (64-aligned).
size_t codebook_i8_amx_scratch_bytes(int64_t cols);

// 32-row tiles [tile_begin, tile_end) (rows 32 b .. 32 b + 31, clipped to v.rows) of y (n x v.rows)
// overwritten, on the calling thread. levels: CodebookI8Tables::v, alpha: its alpha; btiles, d:
// ActI8::tiles and ActI8::d (ntt token tiles); scratch: codebook_i8_amx_scratch_bytes(v.cols) bytes,
// 64-byte aligned. Requirements: codebook_i8_supported(v).
void codebook_i8_amx_tiles(const CodebookView& v, const Q8K3Unpack& k3, const int8_t* levels, const float* alpha,
                           const int8_t* btiles, const float* d, int64_t n, int64_t ntt, float* y, uint8_t* scratch,
                           int64_t tile_begin, int64_t tile_end);

}  // namespace upg::kernels
