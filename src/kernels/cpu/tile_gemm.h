// The one math kernel every codec's prefill path shares: a codec decodes a tile of its weight
// matrix to fp32 (a few rows x a column slice, L1/L2-resident), and gemm_tile_nt() multiplies that
// tile against every input row. tiled_matmul() is the driver (the current thread pool, dynamic over
// row blocks: base/thread_pool.h) that asks a codec's decode callback for tiles. Plus small fp32 ->
// bf16 conversion used by decode-to-bf16.
//
// SIMD: AVX2/FMA micro kernel (3 tokens x 4 tile rows, 12 ymm accumulators) when the target has
// it, a plain scalar loop otherwise (the same loop is gemm_tile_nt_reference). No AVX-512 path
// yet (the build machine lacks AVX-512; see docs/PERFORMANCE.md).
#pragma once
#include <algorithm>
#include <cstdint>
#include <vector>

#include "base/thread_pool.h"

namespace upg::kernels {

// y[m * ldy + r] += sum_{k < kc} x[m * ldx + k] * t[r * ldt + k]   for m < n, r < nr.
// x: n rows of fp32 activations (a column slice), t: nr decoded weight rows (a column slice).
void gemm_tile_nt(const float* x, int64_t ldx, int64_t n, const float* t, int64_t ldt, int64_t nr,
                  int64_t kc, float* y, int64_t ldy);
// The plain loop the fast kernel is tested against (same contract).
void gemm_tile_nt_reference(const float* x, int64_t ldx, int64_t n, const float* t, int64_t ldt,
                            int64_t nr, int64_t kc, float* y, int64_t ldy);

// Round-to-nearest-even fp32 -> bf16 of n values (NaN stays NaN), bit-identical to
// upg::f32_to_bf16 element by element.
void f32_to_bf16_n(const float* in, uint16_t* out, int64_t n);

// Tile sizes of tiled_matmul: kTileRows rows x kTileCols columns of fp32 = 32 KiB; kTileCols is a
// multiple of 64, so every tile's first column is a multiple of 64 (byte-aligned for k-bit codes).
constexpr int64_t kTileRows = 16;
constexpr int64_t kTileCols = 512;

// y (n x rows) = x (n x cols) * W^T where W is only reachable through
//   decode(int64_t r0, int64_t nr, int64_t c0, int64_t kc, float* tile, int64_t ldt)
// which writes W[r0 + i][c0 + j] to tile[i * ldt + j] for i < nr, j < kc (c0 % kTileCols == 0).
// decode must be thread-safe (it is called from the pool's threads). y is fully overwritten.
template <class Decode>
void tiled_matmul(int64_t rows, int64_t cols, const float* x, int64_t n, float* y, Decode&& decode) {
  const int64_t nblocks = (rows + kTileRows - 1) / kTileRows;
  parallel_for_dynamic(nblocks, 1, [&](int64_t b0, int64_t b1) {
    thread_local std::vector<float> tile(static_cast<size_t>(kTileRows * kTileCols));  // per thread, kept
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t r0 = b * kTileRows, nr = std::min(kTileRows, rows - r0);
      for (int64_t i = 0; i < n; ++i) std::fill(y + i * rows + r0, y + i * rows + r0 + nr, 0.0f);
      for (int64_t c0 = 0; c0 < cols; c0 += kTileCols) {
        const int64_t kc = std::min(kTileCols, cols - c0);
        decode(r0, nr, c0, kc, tile.data(), kTileCols);
        gemm_tile_nt(x + c0, cols, n, tile.data(), kTileCols, nr, kc, y + r0, rows);
      }
    }
  });
}

}  // namespace upg::kernels
