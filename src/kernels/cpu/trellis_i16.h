// The trellis codec's products with 16-bit activations (AVX-512 VNNI: vpdpwssd; AVX2: vpmaddwd), every token count,
// so a token's product does not depend on its batch. The fp32 path of trellis_kernels.h converts
// each code to fp32 and multiplies by its group scale before the FMA; here the code stays an integer
// and the activations become integers, so the inner loop is one int16 dot product per 32 weights
// (two codes per 32-bit lane) and token, once the rows' codes are decoded for the block.
//
// Integers (cols and the group G multiples of 64). Chunks of Q columns, Q the largest of 512, 256,
// 128, 64 dividing both G and cols (so a chunk never straddles groups; the converter's trellis
// candidates, G = 512, get Q = 512 when cols allows):
//   activations, per token t and chunk c (columns Qc .. Qc + Q - 1):
//       d = max|x| / 32767, q = round(x / d) in [-32767, 32767] (d = 0, q = 0 for a zero chunk)
//   weight j: h = kCodeMul s_j + kCodeAdd (trellis_code.h), bytes b0..b3 of h; the code's integer
//       is b0 + b1 + b2 + b3 - 510, so with P_j = b0 + b1 + b2 + b3 (0 .. 1020, what vpdpbusd gives
//       against ones): code_int_j = P_j - 510.
//   lane l (0..15) of chunk c: C_l = sum over steps i = 0 .. Q/32 - 1 of P_j q_j + P_j+1 q_j+1,
//       j = Qc + 32i + o(l), o(l) = trellis_i16_lane_column(l) = 4 (l / 4) + 2 (l % 4) for l % 4 < 2,
//       16 + 4 (l / 4) + 2 (l % 4 - 2) otherwise (the order vpackssdw gives two vectors of 16
//       weights' integers; exact int32: |C_l| <= 32 * 1020 * 32767 < 2^31)
//   F_l = fma(float(C_l), m_c, F_l) for c = 0, 1, ... with m_c = s_g(c) * d_c (fp32; s: the f16 scale)
//   K = fma(float(Q_c), m_c, K) for c = 0, 1, ..., Q_c = sum of the chunk's q (exact)
//   y = (R - 510 K) / 128, R = F summed as a tree: l + 8, then + 4, + 2, + 1 (AVX-512's halving order)
// in exactly that fp32 order: the scalar reference and the AVX-512 VNNI kernel give the same bits.
// Accuracy: |x^ - x| <= d / 2 = max|x| / 65534 per chunk; the weights are exact, so the error is
// the activation rounding (relative 1.5e-5 of the chunk's largest |x|) plus fp32 rounding.
// (int8 activations, as the codebook path takes, would need chunks of 64 and a fold per 64 columns,
// and cost 2^8 times the rounding error.)
//
// Kernel (trellis_i16_avx512vnni.cpp): per 4 rows and block of 512 columns, the rows' P are decoded
// once (the 16-weight chunk decode of trellis_kernels_avx512.cpp, vpdpbusd against ones for the
// byte sums, vpackssdw of two chunks: 2 bytes per weight, 4 KiB) into a per-thread buffer; then per
// pass of up to 4 tokens and chunk, Q/32 steps of one vpdpwssd per (row, token), 32 weights each,
// against the token's q pairs in the same lane order (16 int32 accumulators in registers at most),
// the chunk folded into 16 fp32 lanes per (row, token) kept in memory, which carry over to the next
// block. Threads: the current ThreadPool over 4-row groups.
#pragma once
#include <cstdint>
#include <vector>

#include "kernels/cpu/trellis_kernels.h"

namespace upg::kernels {

// The chunk Q for a layout (0: the path does not apply: cols or G not a multiple of 64).
int64_t trellis_i16_chunk(int64_t cols, int64_t group);

// n tokens' activations as int16 per chunk of Q columns.
// The column offset (within a step of 32) of lane l's first weight; its second is the next column.
constexpr int64_t trellis_i16_lane_column(int l) { return (l % 4 < 2 ? 0 : 16) + 4 * (l / 4) + 2 * (l % 2); }

struct ActI16 {
  int64_t n = 0, cols = 0, chunk = 64, nch = 0;
  bool finite = true;            // false: some x was NaN or Inf (the caller takes the fp32 path)
  std::vector<int32_t> pair;     // [n][cols / 2]: per step of 32 columns, lane l = (q_o & 0xffff) | q_o+1 << 16,
                                 // o = trellis_i16_lane_column(l): the operand of vpdpwssd
  std::vector<float> d;          // [n][nch]
  std::vector<int32_t> qsum;     // [n][nch]
};
// x: n x cols, chunk: 64, 128, 256 or 512 dividing cols. Reuse `out` across calls.
void quantize_act_i16(const float* x, int64_t n, int64_t cols, int64_t chunk, ActI16& out);

// Whether the layout allows the path (cols, group multiples of 64).
bool trellis_i16_supported(const TrellisView& v);
// Whether trellis_matmul takes this path for v now: supported and int8_activations()
// (UPG_INT8_ACTIVATIONS=0 keeps fp32; the switch is shared with the codebook's int8 path). The kernel
// is the AVX-512 VNNI one at that SIMD level (UPG_SIMD / set_simd_cap), else the AVX2 one
// (trellis_i16_avx2.cpp): the same bits.
bool trellis_i16_active(const TrellisView& v);

// y (n x rows) overwritten, by the scalar reference of the arithmetic above (tests).
void trellis_matmul_i16_reference(const TrellisView& v, const ActI16& x, float* y);
// The same through the AVX-512 VNNI kernel (at simd_level() >= Avx512Vnni) or the AVX2 one, multithreaded.
void trellis_matmul_i16(const TrellisView& v, const ActI16& x, float* y);

}  // namespace upg::kernels
