#include "kernels/cpu/norm.h"

#include <cmath>

namespace upg::kernels {

void rmsnorm(const float* x, const float* weight, int64_t n_rows, int64_t dim, float eps, float* out) {
#pragma omp parallel for schedule(static) if (n_rows > 1)
  for (int64_t r = 0; r < n_rows; ++r) {
    const float* xr = x + r * dim;
    float* o = out + r * dim;
    double ss = 0;
    for (int64_t i = 0; i < dim; ++i) ss += static_cast<double>(xr[i]) * xr[i];
    const float var = static_cast<float>(ss / static_cast<double>(dim));
    const float inv = 1.0f / std::sqrt(var + eps);
    for (int64_t i = 0; i < dim; ++i) o[i] = weight[i] * (xr[i] * inv);
  }
}

}  // namespace upg::kernels
