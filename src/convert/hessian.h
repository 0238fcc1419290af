// Second-moment statistics of the input of one linear projection, gathered on calibration text:
// H = X^T X = sum over calibration tokens t of x_t x_t^T (cols x cols; x_t = the projection's input
// row for token t). Kept in full (cols^2 floats) when cols <= kMaxFullHessianCols, else only its
// diagonal (cols floats): the full matrix of a 17,920-wide down_proj would take 1.3 GB, and GPTQ's
// O(cols^3) factorisation would dominate conversion. With only a diagonal, GPTQ degenerates to
// importance-weighted rounding (the codec's own encoder).
//
// Units: H is a sum (not a mean) over tokens, so tr(dW H dW^T) is the summed squared output error
// over the calibration tokens; damages of different tensors are in the same units.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace upg {

inline constexpr int64_t kMaxFullHessianCols = 8192;

class InputStats {
 public:
  InputStats() = default;
  InputStats(int64_t cols, bool full);
  // Adds n rows x (n x cols, row-major). Multithreaded over output rows of H (OpenMP).
  void add(const float* x, int64_t n);

  int64_t cols() const { return cols_; }
  bool full() const { return full_; }
  int64_t tokens() const { return tokens_; }
  // Full: cols x cols row-major (symmetric). Empty when !full().
  const std::vector<float>& matrix() const { return h_; }
  // The diagonal (cols values, >= 0), valid in both modes.
  const std::vector<float>& diag() const { return d_; }
  // H(i, j) (full) or the diagonal entry (i == j; 0 elsewhere).
  float at(int64_t i, int64_t j) const { return full_ ? h_[i * cols_ + j] : (i == j ? d_[i] : 0.f); }

 private:
  int64_t cols_ = 0;
  bool full_ = false;
  int64_t tokens_ = 0;
  std::vector<float> h_, d_;
};

}  // namespace upg
