// The GPU layout of an uploaded weight matrix ("tiles"), shared by the upload (gemv_upload.cu) and the
// skinny-GEMM kernel (gemv_mma.cu). y (n x rows) = x (n x cols) W^T, n <= 16 per launch.
//
// The matrix is cut into tiles of 16 rows x 256 columns (rows padded to Mp = 16 * mtiles, columns to
// Kp = 256 * S with zero scales / zero weights). One warp multiplies one tile with 16 tensor-core MMAs
// m16n8k16 (bf16 in, fp32 accumulate): k-step j (0..15) covers tile columns [16j, 16j + 16). Each lane
// owns 128 weights of the tile, exactly its A-fragment elements: with g = lane / 4, t = lane % 4,
// lane value number c = 8j + 2 reg + e (reg 0..3, e 0..1) is the weight at
//     row g + 8 (reg & 1),  column 16j + 2t + 8 (reg >> 1) + e,
// so the pair (e = 0, 1) is one bf16x2 A register. The lane's 128 values are stored as one lane
// stream, U 16-byte words long, and the tile as U x 32 uint4 with word i of lane l at i * 32 + l, so
// each of the warp's U loads is 512 contiguous bytes. Tiles are stored row-tile major: tile (mt, s)
// at index mt * S + s.
//   codebook k bits: U = k. Value c is code bits [c k, c k + k) of the lane stream (LSB first, the
//                    stream's 32-bit words little-endian); code pair c = 2p, 2p + 1 is the 2k-bit field
//                    p, i.e. the index lo | hi << k into a table of bf16x2 level pairs.
//   int8:            U = 8. Value c is byte c of the lane stream.
//   bf16 (dense):    U = 16. Value c is bf16 c of the lane stream.
// Scales (codebook and int8; none for dense): the fold window is F k-steps (F = 4 when the group G is a
// multiple of 64, F = 1 when only a multiple of 16), so a window's 16F columns share one scale per
// row. Per tile, NW = 16 / F windows x 8 values of (scale of row g, scale of row g + 8) as half2
// (F16 sources) or float2 (int8 with F32 scales): entry [tile][w][g]. Padded rows/columns get 0.
// The warp accumulates each window's MMAs in fresh fp32 registers and adds them, times the scales,
// to its running sums.
// Codebook level tables (for one codebook block): k <= 4: the 4^k pairs bf16x2(level[i & m],
// level[i >> k]); k = 5, 6: the 2^k levels, bf16 in the low half of a 32-bit word. Each entry is
// replicated 32 times (entry e, copy l at word 32 e + l) so that lane l always reads its own bank.
// Trellis matrices are not cut into tiles (consecutive weights share state bits, so the MMA fragment
// order would cost L + K bits per pair): their own kernels (trellis_gemv.cu) read each row's bit stream
// as 32-bit words, word i holding stream bits [32 i, 32 i + 32) with the first stream bit most
// significant, rows `pitch` words apart (at least 2 words of zeros after the stream, a multiple of 4),
// and the F16 scales as the codec stores them ([rows, ceil(cols / group)]).
// x is read by the kernel itself in fp32: for n-tile nt (rows 8 nt .. 8 nt + 7 of x) and slice s,
// lane l's B register (j, h) is bf16x2(x[8 nt + g][256 s + 16 j + 2 t + 8 h + {0, 1}]) (zero past n
// or cols).
#pragma once
#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "kernels/cuda/cuda_ops.h"

namespace upg::cuda {

constexpr int kTileRows = 16, kTileCols = 256, kLaneValues = 128;
enum class Dec : int { Codebook = 0, Int8 = 1, Bf16 = 2, Trellis = 3 };

struct DeviceMatrix::Impl {
  Dec dec = Dec::Bf16;
  int bits = 0;          // codebook, trellis (K)
  int state_bits = 0;    // trellis: L
  int64_t group = 0, pitch = 0;  // trellis: columns per scale, words per row
  int fold = 1;          // F (k-steps per scale window); 0 for dense
  bool scale_f32 = false;
  int64_t rows = 0, cols = 0, mtiles = 0, S = 0;
  int units = 0;         // U: uint4 per lane per tile
  DeviceBuffer w, scales;
  // Codebook: nb level tables (replicated, see above), one per block of cb_tiles row tiles.
  DeviceBuffer lut;
  int64_t nb = 1, cb_tiles = 0;
  size_t lut_bytes = 0;  // one table
  RotateParams rot;
  DeviceBuffer signs;    // cols floats when rotated
  mutable DeviceBuffer xrot;  // scratch: rotated x (16 x cols f32)
  mutable const float* prepared = nullptr;  // what DeviceMatrix::prepare made ready
  mutable const float* rotated_x = nullptr;  // DeviceMatrix::input_rotated: x whose x R is in xrot
  mutable int64_t rotated_n = 0;
  std::string layout;
  // Launch configuration per n-tile count (1, 2), worked out on first use (no host queries after).
  struct LaunchCfg {
    const void* fn = nullptr;
    int warps = 0;
    int64_t tpb = 0, kchunks = 0;
    size_t smem = 0;
    int period = 1;  // row tiles per reduction of the warps' partial sums
  };
  mutable LaunchCfg cfg[2];

  void alloc_scratch();
  // x itself, or x rotated into xrot when the codec rotates (n <= 16).
  const float* source(const float* x, int64_t n, void* stream) const;
  // y (+)= src W^T, n <= 16, src from source().
  void multiply(const float* src, int64_t n, float* y, bool accumulate, void* stream) const;
  // y (+)= x W^T for any n through ws (gemm_dequant.cu); ws must be available().
  void gemm(const float* x, int64_t n, float* y, bool accumulate, GemmWorkspace& ws, void* stream) const;
  void product(const float* x, int64_t n, float* y, bool accumulate, void* stream, GemmWorkspace* gemm,
               int64_t gemm_min_tokens) const;
};

// The prefill GEMM (gemm_dequant.cu) decodes W to bf16 a block of row tiles [mt0, mt1) at a time into
// a scratch of `bytes` and multiplies each block with cuBLAS. The blocks, in order: as few as the
// scratch allows (at least one row tile each), of balanced sizes (a remainder of a few rows would
// make a product too short to give every SM a tile).
struct DequantChunk {
  int64_t mt0, mt1;
};
inline std::vector<DequantChunk> dequant_plan(int64_t mtiles, int64_t S, size_t bytes) {
  const int64_t cap = std::max<int64_t>(1, static_cast<int64_t>(bytes / (kTileRows * kTileCols * 2)));  // tiles
  const int64_t per = std::max<int64_t>(1, cap / S), n = (mtiles + per - 1) / per;
  std::vector<DequantChunk> plan;
  for (int64_t i = 0; i < n; ++i) plan.push_back({mtiles * i / n, mtiles * (i + 1) / n});
  return plan;
}

// Kernel launcher (gemv_mma.cu): y (+)= x W^T, n <= 16, x fp32 (rotated already if the codec rotates).
void launch_tiles_gemm(const DeviceMatrix::Impl& m, const float* x, int64_t n, float* y, bool accumulate, void* stream);

// Trellis (trellis_gemv.cu): y (+)= x W^T for n <= 16 (x rotated already), and rows [r0, r1) of W
// decoded to bf16 into out (row r at out + (r - r0) ld) for the prefill GEMM.
void launch_trellis_gemv(const DeviceMatrix::Impl& m, const float* x, int64_t n, float* y, bool accumulate, void* stream);
void launch_trellis_to_bf16(const DeviceMatrix::Impl& m, int64_t r0, int64_t r1, void* out, int64_t ld, void* stream);

}  // namespace upg::cuda
