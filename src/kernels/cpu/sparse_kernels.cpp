// mdcsr sparse CPU kernels. Contracts and technique: see sparse_kernels.h.
#include "kernels/cpu/sparse_kernels.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "base/half.h"
#include "base/thread_pool.h"

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define UPG_SP_AVX2 1
#endif

namespace upg::kernels {

namespace {

template <class T>
inline T ld(const uint8_t* base, int64_t i) {
  T v;
  std::memcpy(&v, base + i * static_cast<int64_t>(sizeof(T)), sizeof(T));
  return v;
}

struct RowRange {
  int64_t i0, i1;        // entries [i0, i1)
  const uint8_t *p, *e;  // delta bytes [p, e)
};
inline RowRange row_range(const MdcsrView& v, int64_t r) {
  return {ld<uint32_t>(v.row_ptr, r), ld<uint32_t>(v.row_ptr, r + 1),
          v.col_delta + ld<uint32_t>(v.row_ptr, v.rows + 1 + r), v.col_delta + ld<uint32_t>(v.row_ptr, v.rows + 2 + r)};
}

// Row r's columns and fp32 values (value * row scale) into col/val (room for its entry count).
// Returns the entry count.
int64_t decode_row(const MdcsrView& v, int64_t r, int32_t* col, float* val) {
  const RowRange rr = row_range(v, r);
  const int64_t cnt = rr.i1 - rr.i0;
  const float s = ld<float>(v.scales, r);
  if (rr.e - rr.p == cnt) {  // no escape bytes: columns are a prefix sum of the gaps
    int32_t c = -1;
    for (int64_t k = 0; k < cnt; ++k) col[k] = c += rr.p[k];
  } else {
    int32_t c = -1;
    int64_t k = 0;
    for (const uint8_t* p = rr.p; p < rr.e; ++p) {
      if (*p == 0) c += 255;
      else col[k++] = c += *p;
    }
  }
  if (v.levels) {
    for (int64_t k = 0; k < cnt; ++k) val[k] = ld<float>(v.levels, ld<uint16_t>(v.values, rr.i0 + k)) * s;
  } else {
    const int8_t* q = reinterpret_cast<const int8_t*>(v.values) + rr.i0;
    int64_t k = 0;
#ifdef UPG_SP_AVX2
    const __m256 sv = _mm256_set1_ps(s);
    for (; k + 8 <= cnt; k += 8)
      _mm256_storeu_ps(val + k, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(
                                                  _mm_loadl_epi64(reinterpret_cast<const __m128i*>(q + k)))), sv));
#endif
    for (; k < cnt; ++k) val[k] = static_cast<float>(q[k]) * s;
  }
  return cnt;
}

inline float sparse_dot(const int32_t* col, const float* val, int64_t cnt, const float* x) {
  int64_t k = 0;
  float s = 0.0f;
#ifdef UPG_SP_AVX2
  __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
  for (; k + 16 <= cnt; k += 16) {
    const __m256i c0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(col + k));
    const __m256i c1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(col + k + 8));
    a0 = _mm256_fmadd_ps(_mm256_loadu_ps(val + k), _mm256_i32gather_ps(x, c0, 4), a0);
    a1 = _mm256_fmadd_ps(_mm256_loadu_ps(val + k + 8), _mm256_i32gather_ps(x, c1, 4), a1);
  }
  __m256 a = _mm256_add_ps(a0, a1);
  __m128 h = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
  h = _mm_add_ps(h, _mm_movehl_ps(h, h));
  h = _mm_add_ss(h, _mm_movehdup_ps(h));
  s = _mm_cvtss_f32(h);
#endif
  for (; k < cnt; ++k) s += val[k] * x[col[k]];
  return s;
}

}  // namespace

void mdcsr_add_matmul_reference(const MdcsrView& v, const float* x, int64_t n, float* y) {
  for (int64_t r = 0; r < v.rows; ++r) {
    const RowRange rr = row_range(v, r);
    const float s = ld<float>(v.scales, r);
    for (int64_t t = 0; t < n; ++t) {
      int64_t i = rr.i0, c = -1;
      float acc = 0.0f;
      for (const uint8_t* p = rr.p; p < rr.e; ++p) {
        if (*p == 0) { c += 255; continue; }
        c += *p;
        const float w = v.levels ? ld<float>(v.levels, ld<uint16_t>(v.values, i)) * s
                                 : static_cast<float>(static_cast<int8_t>(v.values[i])) * s;
        ++i;
        acc += w * x[t * v.cols + c];
      }
      y[t * v.rows + r] += acc;
    }
  }
}

void mdcsr_add_matmul(const MdcsrView& v, const float* x, int64_t n, float* y) {
  if (n <= 0) return;
  parallel_for_dynamic(v.rows, 64, [&](int64_t r0, int64_t r1) {
    thread_local std::vector<int32_t> col;  // per thread, kept between calls
    thread_local std::vector<float> val;
    if (col.size() < static_cast<size_t>(v.cols)) col.resize(static_cast<size_t>(v.cols)), val.resize(col.size());
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t cnt = decode_row(v, r, col.data(), val.data());
      for (int64_t t = 0; t < n; ++t) y[t * v.rows + r] += sparse_dot(col.data(), val.data(), cnt, x + t * v.cols);
    }
  });
}

void mdcsr_decode_bf16(const MdcsrView& v, int64_t r0, int64_t r1, uint16_t* out) {
  parallel_for_dynamic(r1 - r0, 64, [&](int64_t i0, int64_t i1) {
    thread_local std::vector<int32_t> col;  // per thread, kept between calls
    thread_local std::vector<float> val;
    if (col.size() < static_cast<size_t>(v.cols)) col.resize(static_cast<size_t>(v.cols)), val.resize(col.size());
    for (int64_t r = r0 + i0; r < r0 + i1; ++r) {
      uint16_t* o = out + (r - r0) * v.cols;
      std::memset(o, 0, static_cast<size_t>(v.cols) * 2);
      const int64_t cnt = decode_row(v, r, col.data(), val.data());
      for (int64_t k = 0; k < cnt; ++k) o[col[k]] = f32_to_bf16(val[k]);
    }
  });
}

}  // namespace upg::kernels
