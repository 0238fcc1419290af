// CPU kernels for the int8 codec (layout: codecs/int8/int8_codec.h): W[r][c] = q[r][c] *
// scales[r][c / G], q int8, scales f16 or f32, any group size G >= 1.
//   matvec (n = 1, G % 8 == 0): per row, 8 weights per step: sign-extend (vpmovsxbd), convert,
//     multiply by the group scale (so each weight is q * s rounded once, as decode_rows gives it),
//     FMA with x, summed in exactly the tiled path's order (per 512-column tile one 8-lane chain,
//     masked tail, the same reduction; 4 tiles side by side for independent chains, prefetched
//     ahead): a token's product does not depend on the other tokens of the call, bit for bit
//     (test CodecInt8.ProductOfATokenDoesNotDependOnTheOthers). Other group sizes: the tiled path.
//   matmul (n > 1): decoded fp32 tiles + kernels::gemm_tile_nt (tile_gemm.h).
//   decode_bf16: decode to fp32 row segments then round to bf16. OpenMP over rows.
// Without AVX2 the scalar reference loops run.
#pragma once
#include <cstdint>

namespace upg::kernels {

struct Int8View {
  int64_t rows = 0, cols = 0;
  int64_t group = 0, ngroups = 0;  // 1 <= group <= cols, ngroups = ceil(cols / group)
  const int8_t* q = nullptr;       // [rows, cols]
  const uint8_t* scales = nullptr; // [rows, ngroups], f16 or f32, any alignment
  bool f16_scales = true;
};

// W[r][c0 .. c0 + m) to fp32 (any c0, m).
void int8_decode_segment(const Int8View& v, int64_t r, int64_t c0, int64_t m, float* out);
void int8_decode_segment_reference(const Int8View& v, int64_t r, int64_t c0, int64_t m, float* out);
// y (n x rows) = x (n x cols) * W^T, y fully overwritten. Multithreaded.
void int8_matmul(const Int8View& v, const float* x, int64_t n, float* y);
// Plain single-threaded reference (reference decode of each row, fp32 dot products).
void int8_matmul_reference(const Int8View& v, const float* x, int64_t n, float* y);
// Rows [r0, r1) to bf16 (round-to-nearest-even of the fp32 decode). Multithreaded.
void int8_decode_bf16(const Int8View& v, int64_t r0, int64_t r1, uint16_t* out);

}  // namespace upg::kernels
