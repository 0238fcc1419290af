// Random codebook matrices and activations for the kernel tests of the codebook codec
// (test_codebook_q8, test_codebook_i8): random codes, f16 scales (some negative), ascending levels
// per table block (some tables one-sided), activations with rare outliers.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "base/half.h"
#include "kernels/cpu/codebook_kernels.h"

namespace upg::kernels::test_support {

struct RandomCodebook {
  std::vector<uint8_t> q, scales;
  std::vector<float> levels;
  CodebookView v;
};

// cb_rows rows per level table; degenerate = one table with all levels equal.
inline RandomCodebook make_codebook(int k, int64_t rows, int64_t cols, int64_t group, int64_t cb_rows, uint32_t seed,
                             bool degenerate = false) {
  RandomCodebook c;
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  CodebookView& v = c.v;
  v.k = k;
  v.rows = rows;
  v.cols = cols;
  v.group = group;
  v.ngroups = (cols + group - 1) / group;
  v.row_bytes = (cols * k + 7) / 8;
  v.cb_rows = cb_rows;
  c.q.assign(static_cast<size_t>(rows * v.row_bytes), 0);  // exact size: over-reads show under ASan
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < cols; ++j) {
      const uint32_t code = rng() & ((1u << k) - 1);
      for (int t = 0; t < k; ++t)
        if (code >> t & 1) {
          const int64_t bit = j * k + t;
          c.q[static_cast<size_t>(r * v.row_bytes + bit / 8)] |= static_cast<uint8_t>(1u << (bit % 8));
        }
    }
  c.scales.resize(static_cast<size_t>(rows * v.ngroups * 2));
  for (int64_t i = 0; i < rows * v.ngroups; ++i) {
    float s = 0.02f * std::exp(0.5f * nd(rng));
    if (rng() % 4 == 0) s = -s;
    const uint16_t h = f32_to_f16(s);
    std::memcpy(c.scales.data() + 2 * i, &h, 2);
  }
  const int64_t nb = (rows + cb_rows - 1) / cb_rows;
  const int nl = 1 << k;
  for (int64_t b = 0; b < nb; ++b) {
    std::vector<float> L(static_cast<size_t>(nl));
    for (float& l : L) l = nd(rng) + (b % 3 == 1 ? 0.7f : 0.0f);  // some tables asymmetric
    std::sort(L.begin(), L.end());
    if (degenerate && b == 0) std::fill(L.begin(), L.end(), 0.5f);
    c.levels.insert(c.levels.end(), L.begin(), L.end());
  }
  v.q = c.q.data();
  v.scales = c.scales.data();
  v.levels = c.levels.data();
  return c;
}

inline std::vector<float> gaussian(int64_t count, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(count));
  for (float& f : x) f = nd(rng) * (rng() % 256 == 0 ? 8.0f : 1.0f);  // rare outliers
  return x;
}

}  // namespace upg::kernels::test_support
