// The computed code of the trellis codec (codecs/trellis/trellis_codec.h), shared by its encoder,
// its reference decoder and the kernels (hence in the kernels layer): an L-bit state s maps to
//   x = (34038481 * s + 76625530) mod 2^32,  code(s) = (byte0(x) + byte1(x) + byte2(x) + byte3(x) - 510) / 128,
// a sum of four roughly uniform bytes, so the values of all states are close to Gaussian (mean 0,
// standard deviation 1.15, range [-3.98, 3.98]); one multiply-add and a byte sum to decode, no table
// (the "1MAD" code of QTIP, with its constants). Exact in fp32: every decoder gets the same bits.
#pragma once
#include <cstdint>

namespace upg::trellis {

constexpr uint32_t kCodeMul = 34038481u, kCodeAdd = 76625530u;
// The largest K (bits per weight) the codec takes: the encoder's parameter check, the Viterbi search
// and the kernels' chunk loads (static_asserts beside them) all follow this one bound.
constexpr int kMaxBits = 5;
constexpr float kCodeUnit = 1.0f / 128.0f;

inline int code_int(uint32_t s) {
  const uint32_t x = s * kCodeMul + kCodeAdd;
  return static_cast<int>((x & 255u) + ((x >> 8) & 255u) + ((x >> 16) & 255u) + (x >> 24)) - 510;
}
inline float code(uint32_t s) { return static_cast<float>(code_int(s)) * kCodeUnit; }

}  // namespace upg::trellis
