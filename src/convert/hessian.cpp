#include "convert/hessian.h"

#include <cstddef>

namespace upg {

InputStats::InputStats(int64_t cols, bool full) : cols_(cols), full_(full), d_(static_cast<size_t>(cols), 0.f) {
  if (full_) h_.assign(static_cast<size_t>(cols * cols), 0.f);
}

void InputStats::add(const float* x, int64_t n) {
  tokens_ += n;
  const int64_t C = cols_;
  if (full_) {
    // Upper triangle, row i: h[i][j] += sum_t x[t][i] x[t][j] for j >= i; mirrored below.
#pragma omp parallel for schedule(dynamic, 8)
    for (int64_t i = 0; i < C; ++i) {
      float* hi = h_.data() + i * C;
      for (int64_t t = 0; t < n; ++t) {
        const float* xt = x + t * C;
        const float a = xt[i];
        if (a == 0.f) continue;
        for (int64_t j = i; j < C; ++j) hi[j] += a * xt[j];
      }
    }
    for (int64_t i = 0; i < C; ++i) {
      d_[i] = h_[i * C + i];
      for (int64_t j = i + 1; j < C; ++j) h_[j * C + i] = h_[i * C + j];
    }
  } else {
    for (int64_t t = 0; t < n; ++t)
      for (int64_t i = 0; i < C; ++i) d_[i] += x[t * C + i] * x[t * C + i];
  }
}

}  // namespace upg
