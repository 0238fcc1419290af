// Helpers of the tests that compare logit rows with a reference (transformers goldens, a UPG file
// against its source, the GPU against the CPU).
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>

namespace upg::test {

// The largest |got - ref| over the largest |ref| (a row's error relative to its scale).
inline double rel_max_error(const float* got, const float* ref, int64_t n) {
  double md = 0, mx = 0;
  for (int64_t j = 0; j < n; ++j) {
    md = std::max<double>(md, std::fabs(got[j] - ref[j]));
    mx = std::max<double>(mx, std::fabs(ref[j]));
  }
  return md / std::max(mx, 1e-30);
}

// The index of the largest value (the first of equal ones): the greedy token.
inline int32_t argmax(const float* v, int64_t n) { return static_cast<int32_t>(std::max_element(v, v + n) - v); }

}  // namespace upg::test
