#include "kernels/cpu/attention.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "kernels/cpu/activation.h"
#include "kernels/cpu/vec.h"

namespace upg::kernels {

void attention(const AttentionShape& s, const float* q, int64_t n_tokens, int64_t pos0, const float* k_cache,
               const float* v_cache, float* out) {
  const int64_t group = s.n_heads / s.n_kv_heads;
  const int64_t hd = s.head_dim;
#pragma omp parallel
  {
    std::vector<float> scores(static_cast<size_t>(pos0 + n_tokens));
#pragma omp for collapse(2) schedule(dynamic, 4)
    for (int64_t t = 0; t < n_tokens; ++t) {
      for (int64_t h = 0; h < s.n_heads; ++h) {
        const int64_t pos = pos0 + t;
        const int64_t lo = s.window > 0 ? std::max<int64_t>(0, pos - s.window + 1) : 0;
        const int64_t g = h / group;
        const float* qv = q + (t * s.n_heads + h) * hd;
        const float* kb = k_cache + g * s.capacity * hd;
        const float* vb = v_cache + g * s.capacity * hd;
        const int64_t cnt = pos - lo + 1;
        for (int64_t p = lo; p <= pos; ++p) scores[p - lo] = dot(qv, kb + p * hd, hd) * s.scale;
        softmax(scores.data(), cnt);
        float* o = out + (t * s.n_heads + h) * hd;
        std::memset(o, 0, sizeof(float) * hd);
        for (int64_t p = lo; p <= pos; ++p) axpy(o, scores[p - lo], vb + p * hd, hd);
      }
    }
  }
}

}  // namespace upg::kernels
