#include "base/memory_bandwidth.h"

#include <immintrin.h>
#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <memory>

namespace upg {

namespace {
// Sums a[0, n) with all threads (static split in 64-float chunks); every byte is read once.
float read_pass(const float* a, int64_t n) {
  float total = 0.0f;
#pragma omp parallel reduction(+ : total)
  {
    const int nt = omp_get_num_threads(), t = omp_get_thread_num();
    const int64_t lo = n * t / nt / 64 * 64, hi = t == nt - 1 ? n / 32 * 32 : n * (t + 1) / nt / 64 * 64;
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    for (int64_t i = lo; i < hi; i += 32) {
      s0 = _mm256_add_ps(s0, _mm256_loadu_ps(a + i));
      s1 = _mm256_add_ps(s1, _mm256_loadu_ps(a + i + 8));
      s2 = _mm256_add_ps(s2, _mm256_loadu_ps(a + i + 16));
      s3 = _mm256_add_ps(s3, _mm256_loadu_ps(a + i + 24));
    }
    alignas(32) float f[8];
    _mm256_store_ps(f, _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
    for (float v : f) total += v;
  }
  return total;
}
}  // namespace

double measure_read_bandwidth(size_t bytes, int passes) {
  const int64_t n = static_cast<int64_t>(bytes / sizeof(float)) / 32 * 32;
  std::unique_ptr<float[]> a(new float[static_cast<size_t>(n)]);
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) a[i] = static_cast<float>(i & 1023);
  double best = 0;
  volatile float sink = 0;
  for (int p = 0; p < passes; ++p) {
    const auto t0 = std::chrono::steady_clock::now();
    sink = sink + read_pass(a.get(), n);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::max(best, static_cast<double>(n) * sizeof(float) / s);
  }
  return best;
}

size_t last_level_cache_bytes(size_t fallback) {
  for (int name : {_SC_LEVEL4_CACHE_SIZE, _SC_LEVEL3_CACHE_SIZE, _SC_LEVEL2_CACHE_SIZE}) {
    const long v = sysconf(name);
    if (v > 0) return static_cast<size_t>(v);
  }
  return fallback;
}

}  // namespace upg
