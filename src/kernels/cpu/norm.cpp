#include "kernels/cpu/norm.h"

#include <cmath>

#include "base/thread_pool.h"

namespace upg::kernels {

void rmsnorm(const float* x, const float* weight, int64_t n_rows, int64_t dim, float eps, float* out) {
  parallel_for(n_rows, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* xr = x + r * dim;
      float* o = out + r * dim;
      double ss = 0;
      for (int64_t i = 0; i < dim; ++i) ss += static_cast<double>(xr[i]) * xr[i];
      const float var = static_cast<float>(ss / static_cast<double>(dim));
      const float inv = 1.0f / std::sqrt(var + eps);
      for (int64_t i = 0; i < dim; ++i) o[i] = weight[i] * (xr[i] * inv);
    }
  });
}

}  // namespace upg::kernels
