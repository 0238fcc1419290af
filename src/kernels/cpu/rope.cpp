#include "kernels/cpu/rope.h"

#include <cmath>

namespace upg::kernels {

void rope_cos_sin(const float* inv_freq, int64_t half, float attention_scaling, int64_t pos0, int64_t n,
                  float* cos, float* sin) {
  for (int64_t t = 0; t < n; ++t) {
    const float p = static_cast<float>(pos0 + t);
    for (int64_t j = 0; j < half; ++j) {
      const float a = inv_freq[j] * p;  // rounded to fp32 like torch's fp32 matmul
      cos[t * half + j] = static_cast<float>(std::cos(static_cast<double>(a))) * attention_scaling;
      sin[t * half + j] = static_cast<float>(std::sin(static_cast<double>(a))) * attention_scaling;
    }
  }
}

void apply_rope(float* x, int64_t n_tokens, int64_t n_heads, int64_t head_dim, int64_t rotary_dim,
                const float* cos, const float* sin) {
  const int64_t h = rotary_dim / 2;
  for (int64_t t = 0; t < n_tokens; ++t) {
    const float* c = cos + t * h;
    const float* s = sin + t * h;
    for (int64_t hd = 0; hd < n_heads; ++hd) {
      float* v = x + (t * n_heads + hd) * head_dim;
      for (int64_t j = 0; j < h; ++j) {
        const float x1 = v[j], x2 = v[j + h];
        v[j] = x1 * c[j] - x2 * s[j];
        v[j + h] = x2 * c[j] + x1 * s[j];
      }
    }
  }
}

}  // namespace upg::kernels
