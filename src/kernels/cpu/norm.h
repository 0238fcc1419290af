// RMSNorm as transformers computes it in fp32 (LlamaRMSNorm / Phi3RMSNorm):
//   out = weight * (x * rsqrt(mean(x^2) + eps))
#pragma once
#include <cstdint>

namespace upg::kernels {

// x, out: n_rows x dim (row-major; out may alias x). weight: dim. mean(x^2) accumulates in double.
void rmsnorm(const float* x, const float* weight, int64_t n_rows, int64_t dim, float eps, float* out);

}  // namespace upg::kernels
