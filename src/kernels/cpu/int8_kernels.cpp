// int8 CPU kernels. Contracts and technique: see int8_kernels.h.
#include "kernels/cpu/int8_kernels.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "base/half.h"
#include "base/thread_pool.h"
#include "kernels/cpu/tile_gemm.h"

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define UPG_I8_AVX2 1
#endif

namespace upg::kernels {

namespace {

inline float scale_at(const Int8View& v, int64_t r, int64_t g) {
  const size_t i = static_cast<size_t>(r * v.ngroups + g);
  if (v.f16_scales) {
    uint16_t h;
    std::memcpy(&h, v.scales + 2 * i, 2);
    return f16_to_f32(h);
  }
  float f;
  std::memcpy(&f, v.scales + 4 * i, 4);
  return f;
}

#ifdef UPG_I8_AVX2
inline __m256 load8(const int8_t* q) {
  return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(q))));
}

inline float hsum8(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

float row_dot_avx2(const Int8View& v, int64_t r, const float* x) {
  const int8_t* q = v.q + r * v.cols;
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  float tail = 0.0f;
  for (int64_t g = 0; g < v.ngroups; ++g) {
    const int64_t c0 = g * v.group, c1 = std::min(v.cols, c0 + v.group);
    const float sf = scale_at(v, r, g);
    const __m256 s = _mm256_set1_ps(sf);
    int64_t c = c0;
    for (; c + 16 <= c1; c += 16) {
      acc0 = _mm256_fmadd_ps(_mm256_mul_ps(load8(q + c), s), _mm256_loadu_ps(x + c), acc0);
      acc1 = _mm256_fmadd_ps(_mm256_mul_ps(load8(q + c + 8), s), _mm256_loadu_ps(x + c + 8), acc1);
    }
    if (c + 8 <= c1) {
      acc0 = _mm256_fmadd_ps(_mm256_mul_ps(load8(q + c), s), _mm256_loadu_ps(x + c), acc0);
      c += 8;
    }
    for (; c < c1; ++c) tail += static_cast<float>(q[c]) * sf * x[c];
  }
  return hsum8(_mm256_add_ps(acc0, acc1)) + tail;
}
#endif

}  // namespace

void int8_decode_segment_reference(const Int8View& v, int64_t r, int64_t c0, int64_t m, float* out) {
  for (int64_t j = 0; j < m; ++j)
    out[j] = static_cast<float>(v.q[r * v.cols + c0 + j]) * scale_at(v, r, (c0 + j) / v.group);
}

void int8_decode_segment(const Int8View& v, int64_t r, int64_t c0, int64_t m, float* out) {
#ifdef UPG_I8_AVX2
  const int8_t* q = v.q + r * v.cols;
  int64_t c = c0;
  const int64_t end = c0 + m;
  while (c < end) {
    const int64_t g = c / v.group, gend = std::min(end, (g + 1) * v.group);
    const float sf = scale_at(v, r, g);
    const __m256 s = _mm256_set1_ps(sf);
    for (; c + 8 <= gend; c += 8) _mm256_storeu_ps(out + (c - c0), _mm256_mul_ps(load8(q + c), s));
    for (; c < gend; ++c) out[c - c0] = static_cast<float>(q[c]) * sf;
  }
#else
  int8_decode_segment_reference(v, r, c0, m, out);
#endif
}

void int8_matmul_reference(const Int8View& v, const float* x, int64_t n, float* y) {
  std::vector<float> row(static_cast<size_t>(v.cols));
  for (int64_t r = 0; r < v.rows; ++r) {
    int8_decode_segment_reference(v, r, 0, v.cols, row.data());
    for (int64_t t = 0; t < n; ++t) {
      float s = 0.0f;
      for (int64_t c = 0; c < v.cols; ++c) s += row[c] * x[t * v.cols + c];
      y[t * v.rows + r] = s;
    }
  }
}

void int8_matmul(const Int8View& v, const float* x, int64_t n, float* y) {
  if (n <= 0) return;
#ifdef UPG_I8_AVX2
  if (n == 1) {
    parallel_for(v.rows, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) y[r] = row_dot_avx2(v, r, x);
    });
    return;
  }
#endif
  tiled_matmul(v.rows, v.cols, x, n, y, [&](int64_t r0, int64_t nr, int64_t c0, int64_t kc, float* t, int64_t ldt) {
    for (int64_t i = 0; i < nr; ++i) int8_decode_segment(v, r0 + i, c0, kc, t + i * ldt);
  });
}

void int8_decode_bf16(const Int8View& v, int64_t r0, int64_t r1, uint16_t* out) {
  constexpr int64_t kSeg = 1024;
  parallel_for(r1 - r0, [&](int64_t i0, int64_t i1) {
    std::vector<float> buf(kSeg);
    for (int64_t r = r0 + i0; r < r0 + i1; ++r)
      for (int64_t c0 = 0; c0 < v.cols; c0 += kSeg) {
        const int64_t m = std::min(kSeg, v.cols - c0);
        int8_decode_segment(v, r, c0, m, buf.data());
        f32_to_bf16_n(buf.data(), out + (r - r0) * v.cols + c0, m);
      }
  });
}

}  // namespace upg::kernels
