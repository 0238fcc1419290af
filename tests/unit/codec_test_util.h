// Helpers for the codec tests: random matrices, the reference product (decode_rows + dense
// matmul) and error measures.
#pragma once
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "base/cpu_features.h"
#include "codecs/codec.h"
#include "codecs/weight_matrix.h"

namespace upg::test {

inline std::vector<float> gaussian_matrix(int64_t rows, int64_t cols, uint32_t seed, float sigma = 0.02f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, sigma);
  std::vector<float> w(rows * cols);
  for (float& v : w) v = nd(rng);
  return w;
}

// Student-t-like heavy tails: gaussian times an occasional large factor.
inline std::vector<float> heavy_tailed_matrix(int64_t rows, int64_t cols, uint32_t seed) {
  std::vector<float> w = gaussian_matrix(rows, cols, seed);
  std::mt19937 rng(seed + 1);
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  for (float& v : w)
    if (u(rng) < 0.01f) v *= 12.0f;
  return w;
}

inline std::vector<float> random_importance(int64_t cols, uint32_t seed) {
  std::mt19937 rng(seed);
  std::lognormal_distribution<float> ln(0.0f, 1.5f);
  std::vector<float> h(cols);
  for (float& v : h) v = ln(rng);
  return h;
}

inline std::vector<float> decode_all(const WeightMatrix& m) {
  std::vector<float> out(m.rows() * m.cols());
  m.decode_rows(0, m.rows(), out.data());
  return out;
}

// sqrt(sum h_j (a - b)^2 / sum h_j a^2) over all entries; h null = 1.
inline double rel_error(const std::vector<float>& a, const std::vector<float>& b, int64_t cols,
                        const float* h = nullptr) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    double w = h ? h[i % cols] : 1.0;
    num += w * (a[i] - b[i]) * (a[i] - b[i]);
    den += w * a[i] * a[i];
  }
  return std::sqrt(num / den);
}

// The fast fp32 matmul must agree with decode_rows followed by a plain dense product, on fresh
// random inputs, for n = 1 and n = 7. (Int8 activations are switched off here: that path has its
// own error bound, checked in test_kernels_codecs and test_codebook_q8.)
inline void expect_matmul_matches_reference(const WeightMatrix& m, uint32_t seed) {
  struct Fp32Only {
    Fp32Only() { set_int8_activations(false); }
    ~Fp32Only() { set_int8_activations(true); }
  } fp32_only;
  const std::vector<float> W = decode_all(m);
  for (int64_t n : {1, 7}) {
    std::vector<float> x = gaussian_matrix(n, m.cols(), seed + static_cast<uint32_t>(n), 1.0f);
    std::vector<float> y(n * m.rows(), NAN);
    m.matmul(x.data(), n, y.data());
    for (int64_t t = 0; t < n; ++t)
      for (int64_t r = 0; r < m.rows(); ++r) {
        double ref = 0, mag = 0;
        for (int64_t c = 0; c < m.cols(); ++c) {
          ref += static_cast<double>(W[r * m.cols() + c]) * x[t * m.cols() + c];
          mag += std::fabs(static_cast<double>(W[r * m.cols() + c]) * x[t * m.cols() + c]);
        }
        ASSERT_NEAR(y[t * m.rows() + r], ref, 1e-5 * mag + 1e-30)
            << "n=" << n << " t=" << t << " row=" << r;
      }
  }
}

}  // namespace upg::test
