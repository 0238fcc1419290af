#include "codecs/codebook/levels.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "base/error.h"

namespace upg {

const std::vector<uint32_t>& first_primes() {
  static const std::vector<uint32_t> primes = [] {
    // The 10,000th prime is 104729; sieve a little beyond it.
    const uint32_t limit = 105000;
    std::vector<uint8_t> composite(limit + 1, 0);
    std::vector<uint32_t> out;
    out.reserve(kNumPrimes);
    for (uint32_t i = 2; i <= limit && out.size() < static_cast<size_t>(kNumPrimes); ++i) {
      if (composite[i]) continue;
      out.push_back(i);
      for (uint64_t j = static_cast<uint64_t>(i) * i; j <= limit; j += i) composite[j] = 1;
    }
    return out;
  }();
  return primes;
}

PrimeCode prime_code(int k, int offset, int c) {
  const int m = 1 << (k - 1);
  if (c < m) return {offset + m - 1 - c, -1};
  return {offset + c - m, +1};
}

std::vector<float> prime_levels(int k, int offset) {
  UPG_CHECK(k >= 1 && k <= 8, "prime levels: bits = ", k, " is outside [1, 8]");
  const int m = 1 << (k - 1);
  UPG_CHECK(offset >= 0 && offset + m <= kNumPrimes, "prime levels: prime_offset = ", offset,
            " needs primes up to index ", offset + m - 1, ", only ", kNumPrimes, " are available");
  const auto& p = first_primes();
  const double norm = p[offset + m - 1];
  std::vector<float> L(2 * m);
  for (int c = 0; c < 2 * m; ++c) {
    PrimeCode pc = prime_code(k, offset, c);
    L[c] = static_cast<float>(pc.sign * static_cast<double>(p[pc.prime_idx]) / norm);
  }
  return L;
}

std::vector<float> gaussian_levels(int k) {
  UPG_CHECK(k >= 1 && k <= 8, "gaussian levels: bits = ", k, " is outside [1, 8]");
  const int L = 1 << k;
  auto pdf = [](double x) { return std::exp(-0.5 * x * x) / std::sqrt(2 * M_PI); };
  auto cdf = [](double x) { return 0.5 * std::erfc(-x / std::sqrt(2.0)); };
  std::vector<double> lv(L);
  for (int i = 0; i < L; ++i) lv[i] = -3.0 + 6.0 * (i + 0.5) / L;
  for (int it = 0; it < 2000; ++it) {  // Lloyd-Max: centroid of each cell between midpoints
    std::vector<double> nl(L);
    for (int i = 0; i < L; ++i) {
      double a = i == 0 ? -INFINITY : 0.5 * (lv[i - 1] + lv[i]);
      double b = i == L - 1 ? INFINITY : 0.5 * (lv[i] + lv[i + 1]);
      double mass = cdf(b) - cdf(a);
      double pa = std::isinf(a) ? 0.0 : pdf(a), pb = std::isinf(b) ? 0.0 : pdf(b);
      nl[i] = mass > 1e-300 ? (pa - pb) / mass : lv[i];
    }
    lv = nl;
  }
  const double mx = std::max(std::fabs(lv.front()), std::fabs(lv.back()));
  std::vector<float> out(L);
  for (int i = 0; i < L; ++i) out[i] = static_cast<float>(lv[i] / mx);
  return out;
}

std::vector<float> kmeans_1d(const float* v, const float* w, size_t n, std::vector<float> init,
                             int iters) {
  const int L = static_cast<int>(init.size());
  if (n == 0 || L == 0) return init;
  std::vector<uint32_t> order(n);
  std::iota(order.begin(), order.end(), 0u);
  std::sort(order.begin(), order.end(), [&](uint32_t a, uint32_t b) { return v[a] < v[b]; });
  std::vector<float> sv(n);
  std::vector<double> cw(n + 1, 0.0), cwv(n + 1, 0.0);  // prefix sums of w and w*v (sorted)
  for (size_t i = 0; i < n; ++i) {
    sv[i] = v[order[i]];
    double wi = w ? w[order[i]] : 1.0;
    cw[i + 1] = cw[i] + wi;
    cwv[i + 1] = cwv[i] + wi * sv[i];
  }
  std::vector<float> lv = std::move(init);
  std::sort(lv.begin(), lv.end());
  for (int it = 0; it < iters; ++it) {
    size_t start = 0;
    bool changed = false;
    for (int i = 0; i < L; ++i) {
      size_t end = n;
      if (i < L - 1) {
        float t = 0.5f * (lv[i] + lv[i + 1]);
        end = static_cast<size_t>(std::upper_bound(sv.begin() + start, sv.end(), t) - sv.begin());
      }
      double sw = cw[end] - cw[start];
      if (sw > 0) {
        float nv = static_cast<float>((cwv[end] - cwv[start]) / sw);
        changed |= nv != lv[i];
        lv[i] = nv;
      }
      start = end;
    }
    std::sort(lv.begin(), lv.end());
    if (!changed) break;
  }
  return lv;
}

}  // namespace upg
