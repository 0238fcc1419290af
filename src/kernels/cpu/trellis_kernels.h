// CPU kernels for the trellis codec (layout: codecs/trellis/trellis_codec.h): each row one MSB-first
// bit stream, weight j's L-bit state at stream bit j*K, value = f16 group scale * code(state)
// (kernels/trellis_code.h: one multiply-add and a byte sum).
//
// The AVX2 path decodes 8 weights per step: since G and the segment start are multiples of 8, the
// 8 states of a chunk lie in the K bytes at chunk * K plus at most 3 more; one 8-byte broadcast
// load, one in-lane byte shuffle (each 32-bit lane gets the 4 bytes from its state's first byte,
// big-endian), one variable left shift (the state's bit offset in that byte) and one right shift
// (by 32 - L) give the 8 states; then the code: multiply-add, byte sums (maddubs + madd), convert,
// scale. With AVX-512 F+BW (trellis_kernels_avx512.cpp) the same takes 16 weights per step from one
// 16-byte broadcast. The last chunks of a row (whose loads would pass the row's end) and segments
// not starting at a multiple of 8 take the scalar loop.
//   matmul, n <= kFusedTokens (decode, small batches): each row decoded once in registers and
//   multiplied into up to 4 tokens at a time (FMA; 4 rows at a time for one token, 2 for two),
//   threads over rows; larger n: tiles decoded to fp32 and multiplied by kernels::gemm_tile_nt
//   (tile_gemm.h). The fused path sums each (row, token) in exactly the tiled path's order (per
//   512-column tile one 8-lane chain, AVX-512's 16-weight steps entering it as two steps of 8,
//   masked tail, the same reduction): a token's product does not depend on the other tokens of
//   the call, bit for bit (test TrellisCodec.ProductOfATokenDoesNotDependOnTheOthers).
#pragma once
#include <cstdint>

namespace upg::kernels {

constexpr int64_t kFusedTokens = 8;

struct TrellisView {
  int k = 3, l = 12;               // bits per weight, state bits
  int64_t rows = 0, cols = 0;
  int64_t group = 64, ngroups = 0; // weights per scale (multiple of 8), ceil(cols / group)
  int64_t row_bytes = 0;           // ceil((L + (cols - 1) * K) / 8)
  const uint8_t* q = nullptr;      // [rows, row_bytes], any alignment
  const uint8_t* scales = nullptr; // f16 [rows, ngroups], any alignment
};

// The L-bit state at stream bit `bit` of a row (bytes past the row's end read as 0): the scalar
// decoders' (trellis_decode_segment_scalar, the int16 path's reference) one step.
uint32_t trellis_state_at(const uint8_t* row, int64_t row_bytes, int64_t bit, int L);

// W[r][c0 .. c0 + m) to fp32 in out.
void trellis_decode_segment(const TrellisView& v, int64_t r, int64_t c0, int64_t m, float* out);
// The scalar loop of the same (one 4-byte big-endian window per state), the reference the SIMD
// paths are tested against (and itself tested against the codec's bit-by-bit decode_rows).
void trellis_decode_segment_scalar(const TrellisView& v, int64_t r, int64_t c0, int64_t m, float* out);

// y (n x rows) = x (n x cols) * W^T, y fully overwritten. Multithreaded (the current thread pool).
// Where trellis_i16_active(v) (cols and group multiples of 64, int8_activations() on)
// and x is finite, the int16-activation path of trellis_i16.h; otherwise the fp32 paths above.
void trellis_matmul(const TrellisView& v, const float* x, int64_t n, float* y);

}  // namespace upg::kernels
