// The plain reference of kernels/logit_select.h (the CPU backend's implementation, and what the CUDA
// kernels are tested against).
#include "kernels/logit_select.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "base/error.h"

namespace upg::kernels {

void largest_first(const float* x, int64_t n, int64_t k, std::vector<int32_t>& idx) {
  idx.resize(static_cast<size_t>(n));
  std::iota(idx.begin(), idx.end(), 0);
  std::partial_sort(idx.begin(), idx.begin() + k, idx.end(),
                    [&](int32_t a, int32_t b) { return x[a] > x[b] || (x[a] == x[b] && a < b); });
}

void penalize_logits(float* logits, int64_t ld, const LogitPenalty* penalties, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    float& l = logits[static_cast<int64_t>(penalties[i].row) * ld + penalties[i].token];
    l = penalized(l, penalties[i]);
  }
}

void top_logits(const float* logits, int64_t ld, const int32_t* rows, int64_t nrows, int64_t vocab, int k,
                int32_t* ids, float* values, double* sum_exp) {
  UPG_CHECK(k >= 1 && k <= std::min<int64_t>(vocab, kMaxTopLogits), "top_logits: k = ", k, " for a vocabulary of ",
            vocab, " (at most ", kMaxTopLogits, ")");
  std::vector<int32_t> idx;
  for (int64_t i = 0; i < nrows; ++i) {
    const float* x = logits + static_cast<int64_t>(rows[i]) * ld;
    largest_first(x, vocab, k, idx);
    if (sum_exp) {
      const float mx = x[idx[0]];
      double sum = 0;
      for (int64_t j = 0; j < vocab; ++j) sum += std::exp(x[j] - mx);
      sum_exp[i] = sum;
    }
    for (int j = 0; j < k; ++j) {
      ids[i * k + j] = idx[j];
      values[i * k + j] = x[idx[j]];
    }
  }
}

}  // namespace upg::kernels
