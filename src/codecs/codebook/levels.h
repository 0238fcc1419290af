// Level tables for low-bit codecs. A level table holds 2^k values sorted ascending; a weight is
// stored as (index into the table) and reconstructed as table[index] * group scale.
//  - prime LUT: the first 10,000 primes (sieved once, on first use); see prime_levels().
//  - gaussian: Lloyd-Max optimal levels for N(0, 1), computed numerically.
//  - fitted: importance-weighted 1-D k-means (Lloyd) of the data itself.
// Every table returned here is normalised so that max |level| = 1.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace upg {

constexpr int kNumPrimes = 10000;
// The first kNumPrimes primes (2, 3, 5, ..., 104729), computed with a sieve of Eratosthenes.
const std::vector<uint32_t>& first_primes();

// The prime table for k bits (our reading of the seed design's reconstruct_weight(prime_idx,
// scale)): m = 2^(k-1) magnitudes are the consecutive primes p[o], ..., p[o + m - 1]
// (o = offset), each with both signs. Code c < m means -p[o + m - 1 - c], code c >= m means
// +p[o + c - m]; values are divided by p[o + m - 1], so weight = sign * p[prime_idx] /
// p[o + m - 1] * scale. Ascending order, 2^k entries. Requires 1 <= k <= 8 and
// o + m <= kNumPrimes.
std::vector<float> prime_levels(int k, int offset);
// The prime index (into first_primes()) and sign that code c stands for (see prime_levels).
struct PrimeCode {
  int prime_idx;
  int sign;
};
PrimeCode prime_code(int k, int offset, int c);

// Lloyd-Max levels for a standard Gaussian with 2^k levels, ascending, normalised to max 1.
std::vector<float> gaussian_levels(int k);

// Weighted 1-D k-means: n values v with weights w (w may be null = all 1), starting from `init`
// (ascending, size L). Returns L levels ascending; a level whose cell is empty keeps its value.
// Cost O(n log n + iters * L log n).
std::vector<float> kmeans_1d(const float* v, const float* w, size_t n, std::vector<float> init,
                             int iters);

// Index of the level nearest to x in an ascending table (ties go to the lower index).
inline int nearest_level(const float* levels, int L, float x) {
  int lo = 0, hi = L - 1;  // invariant: answer in [lo, hi]
  while (lo < hi) {
    int mid = (lo + hi) >> 1;
    if (x > 0.5f * (levels[mid] + levels[mid + 1])) lo = mid + 1; else hi = mid;
  }
  return lo;
}

// nearest_level with the midpoints precomputed: for tables of up to 16 levels a branch-free count
// of the midpoints below x (the encoders' inner loop); same answers as nearest_level, ties included.
class LevelSearch {
 public:
  LevelSearch(const float* levels, int L) : levels_(levels), n_(L) {
    if (L <= 16)
      for (int i = 0; i + 1 < L; ++i) mids_[i] = 0.5f * (levels[i] + levels[i + 1]);
  }
  int operator()(float x) const {
    if (n_ > 16) return nearest_level(levels_, n_, x);
    int c = 0;
    for (int i = 0; i + 1 < n_; ++i) c += x > mids_[i];
    return c;
  }

 private:
  const float* levels_;
  int n_;
  float mids_[16] = {};
};

}  // namespace upg
