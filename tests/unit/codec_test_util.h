// Helpers for the codec tests: random matrices, the reference product (decode_rows + dense
// matmul), error measures, and the check that a token's product does not depend on its batch.
#pragma once
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "base/cpu_features.h"
#include "codecs/codec.h"
#include "codecs/weight_matrix.h"

namespace upg::test {

// One stored form per codec and shared option (rotation, outliers) that slicing and row scaling
// must handle (test_codec_slice, test_tuning).
struct CodecCase {
  const char* codec;
  CodecParams params;
};

inline std::vector<CodecCase> stored_codec_cases() {
  return {
      {"int8", {{"group", 128}}},
      {"int8", {{"group", 64}, {"scale_dtype", "f32"}}},
      {"int8", {{"group", 0}}},
      {"codebook", {{"bits", 3}, {"group", 64}}},
      {"codebook", {{"bits", 2}, {"group", 64}, {"codebook_rows", 8}}},
      {"codebook", {{"bits", 4}, {"group", 32}, {"rotate", true}}},
      {"codebook", {{"bits", 3}, {"group", 64}, {"rotate", {{"seed", 9}}}, {"outliers", {{"fraction", 0.02}}}}},
      {"codebook", {{"bits", 3}, {"outliers", {{"fraction", 0.02}, {"values", "levels"}}}}},
      {"trellis", {{"bits", 3}, {"group", 64}, {"passes", 1}}},
      {"trellis", {{"bits", 2}, {"state_bits", 10}, {"group", 32}, {"passes", 1}, {"rotate", true}}},
      {"mdcsr", {{"keep_fraction", 0.1}}},
      {"mdcsr", {{"keep_fraction", 0.05}, {"values", "levels"}, {"num_levels", 64}}},
  };
}

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

// A token's product does not depend on the other tokens of the call, bit for bit, at every SIMD
// level this CPU has (each forced in turn with set_simd_cap; UPG_SIMD does not narrow it): the same
// 40 tokens (fresh inputs of different magnitudes) multiplied in one call are the reference; the
// same tokens in reversed order (other neighbours, other places in the micro kernels' token
// blocks), and runs of n = 1 (decode) .. 40 tokens at several starts, must give the same bits. A
// kernel may take another path for another n, but must then sum each token in the same order.
// Reports every (level, n) that differs, with its largest difference and where.
inline void expect_product_independent_of_batch(const WeightMatrix& m, uint32_t seed, const std::string& what) {
  const int64_t rows = m.rows(), cols = m.cols(), ntok = 40;
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.f, 1.f);
  std::vector<float> x(static_cast<size_t>(ntok * cols));
  for (int64_t t = 0; t < ntok; ++t)
    for (int64_t j = 0; j < cols; ++j) x[t * cols + j] = nd(rng) * (0.1f + static_cast<float>(t % 5));
  std::vector<float> xrev(x.size());
  for (int64_t t = 0; t < ntok; ++t)
    std::copy(x.begin() + t * cols, x.begin() + (t + 1) * cols, xrev.begin() + (ntok - 1 - t) * cols);
  // Compares `got` (n tokens) with the reference; false (and one failure) when they differ.
  auto compare = [&](const float* got, const float* ref, int64_t n, int64_t t0, const std::string& where) {
    if (std::memcmp(got, ref, static_cast<size_t>(n * rows) * sizeof(float)) == 0) return true;
    double maxd = 0, rel = 0;
    int64_t at_t = 0, at_r = 0, ndiff = 0;
    for (int64_t t = 0; t < n; ++t)
      for (int64_t r = 0; r < rows; ++r) {
        const float a = got[t * rows + r], b = ref[t * rows + r];
        if (std::memcmp(&a, &b, sizeof a) == 0) continue;
        ++ndiff;
        const double d = std::fabs(static_cast<double>(a) - b);
        if (!(d <= maxd)) maxd = d, at_t = t, at_r = r, rel = d / std::max(1e-30, std::fabs(static_cast<double>(b)));
      }
    ADD_FAILURE() << what << ", " << where << ": " << ndiff << " of " << n * rows << " outputs differ, largest |diff| "
                  << maxd << " (relative " << rel << ") at token " << t0 + at_t << " row "
                  << at_r;
    return false;
  };
  struct UncapOnExit {
    ~UncapOnExit() { set_simd_cap(std::nullopt); }
  } uncap;
  const SimdLevel top = cpu_simd_level();
  for (int lvl = static_cast<int>(top); lvl >= 0; --lvl) {
    set_simd_cap(static_cast<SimdLevel>(lvl));
    const std::string level = simd_level_name(static_cast<SimdLevel>(lvl));
    std::vector<float> all(static_cast<size_t>(ntok * rows)), part(all.size()), rev(all.size());
    m.matmul(x.data(), ntok, all.data());
    m.matmul(xrev.data(), ntok, rev.data());
    std::vector<float> rev_back(rev.size());
    for (int64_t t = 0; t < ntok; ++t)
      std::copy(rev.begin() + t * rows, rev.begin() + (t + 1) * rows, rev_back.begin() + (ntok - 1 - t) * rows);
    compare(rev_back.data(), all.data(), ntok, 0, level + ", the " + std::to_string(ntok) + " tokens reversed");
    for (int64_t n : {1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 33, 39}) {
      std::vector<int64_t> starts;
      for (int64_t t0 = 0; t0 + n <= ntok; t0 += std::max<int64_t>(n, 7)) starts.push_back(t0);
      if (starts.back() != ntok - n) starts.push_back(ntok - n);
      for (int64_t t0 : starts) {
        std::fill(part.begin(), part.end(), NAN);
        m.matmul(x.data() + t0 * cols, n, part.data());
        if (!compare(part.data(), all.data() + t0 * rows, n, t0,
                     level + ", tokens " + std::to_string(t0) + " .. " + std::to_string(t0 + n - 1) + " in a call of " +
                         std::to_string(n) + " vs of " + std::to_string(ntok)))
          break;  // one report per (level, n)
      }
    }
  }
}

}  // namespace upg::test
