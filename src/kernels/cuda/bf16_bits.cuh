// Rounding to bf16 bit for bit as the CPU does (the KV cache's rows must be the same bytes on both).
#pragma once
#include <cstdint>

namespace upg::cuda {

// fp32 -> bf16 exactly as upg::f32_to_bf16 (base/half.h): round to nearest even; a NaN keeps its
// sign and top mantissa bits, made quiet (cvt.rn.bf16.f32 would give the canonical NaN instead).
__device__ __forceinline__ uint16_t to_bf16_bits(float f) {
  uint32_t u = __float_as_uint(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

}  // namespace upg::cuda
