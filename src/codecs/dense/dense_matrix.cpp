#include "codecs/dense/dense_matrix.h"

#include <algorithm>
#include <cstring>
#include <vector>

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>
#define UPG_DENSE_AVX2 1
#endif

#include "base/error.h"
#include "base/half.h"
#include "base/thread_pool.h"
#include "kernels/cpu/tile_gemm.h"

namespace upg {

namespace {

constexpr int64_t kRowBlock = 64;   // rows of W per tile
constexpr int64_t kColBlock = 256;  // columns of W per tile (tile = 64 KiB of fp32)

template <TensorDType D>
inline float load_scalar(const uint8_t* p, int64_t i) {
  if constexpr (D == TensorDType::F32) {
    float f;
    std::memcpy(&f, p + 4 * i, 4);
    return f;
  } else {
    uint16_t h;
    std::memcpy(&h, p + 2 * i, 2);
    if constexpr (D == TensorDType::BF16) return bf16_to_f32(h);
    else return f16_to_f32(h);
  }
}

template <TensorDType D>
constexpr size_t elem_size() {
  return D == TensorDType::F32 ? 4 : 2;
}

// Converts `count` elements starting at element `i` of p to fp32.
template <TensorDType D>
inline void convert(const uint8_t* p, int64_t i, int64_t count, float* out) {
  int64_t k = 0;
#ifdef UPG_DENSE_AVX2
  for (; k + 8 <= count; k += 8) {
    const uint8_t* q = p + (i + k) * elem_size<D>();
    __m256 v;
    if constexpr (D == TensorDType::F32) v = _mm256_loadu_ps(reinterpret_cast<const float*>(q));
    else if constexpr (D == TensorDType::BF16)
      v = _mm256_castsi256_ps(_mm256_slli_epi32(
          _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q))), 16));
    else v = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q)));
    _mm256_storeu_ps(out + k, v);
  }
#endif
  for (; k < count; ++k) out[k] = load_scalar<D>(p, i + k);
}

#ifdef UPG_DENSE_AVX2
template <TensorDType D>
inline __m256 load8(const uint8_t* q) {
  if constexpr (D == TensorDType::F32) return _mm256_loadu_ps(reinterpret_cast<const float*>(q));
  else if constexpr (D == TensorDType::BF16)
    return _mm256_castsi256_ps(
        _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q))), 16));
  else return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q)));
}

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
#endif

#ifdef UPG_DENSE_AVX2
inline __m256i tail_mask(int64_t valid) {
  alignas(32) static const int32_t kIdx[8] = {0, 1, 2, 3, 4, 5, 6, 7};
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int32_t>(valid)),
                            _mm256_load_si256(reinterpret_cast<const __m256i*>(kIdx)));
}

// One token (decode), Q whole column blocks of one row (w: the row) from column c0: the sums the
// tiled path (micro below) makes for them, bit for bit: per block one 8-lane FMA chain (lane l
// takes the block's columns l, l + 8, ...), reduced by hsum and added to the row's sum s in block
// order. The Q chains are independent, and the row is still read front to back (Q blocks of 256
// columns side by side: one stream, as decode wants when it streams W from memory).
template <TensorDType D, int Q>
inline void blocks_one_token(const uint8_t* w, const float* x, int64_t c0, float& s) {
  constexpr size_t es = elem_size<D>();
  __m256 acc[Q];
  for (int q = 0; q < Q; ++q) acc[q] = _mm256_setzero_ps();
  // The Q blocks' chains step through Q places of the row at once, which the hardware prefetcher
  // does not follow as one stream: each step also prefetches the row's bytes as many ahead.
  constexpr int64_t ahead = 2 * 4 * kColBlock * es;
  const uint8_t* pf = w + c0 * es + ahead;
  for (int64_t k = c0; k < c0 + kColBlock; k += 8, pf += 8 * Q * es) {
    for (size_t b = 0; b < 8 * Q * es; b += 64) _mm_prefetch(reinterpret_cast<const char*>(pf + b), _MM_HINT_T0);
    for (int q = 0; q < Q; ++q)
      acc[q] = _mm256_fmadd_ps(_mm256_loadu_ps(x + k + q * kColBlock), load8<D>(w + (k + q * kColBlock) * es), acc[q]);
  }
  for (int q = 0; q < Q; ++q) s += hsum(acc[q]);
}

// One token, one row: y = the tiled path's sum for it, bit for bit, so a token's product does not
// depend on the other tokens of the call; the last, partial block with zeros in the missing lanes
// of both operands, as micro's masked tail. The weights are converted in registers, not through
// the tile.
template <TensorDType D>
inline float row_one_token(const uint8_t* w, const float* x, int64_t cols) {
  constexpr size_t es = elem_size<D>();
  const int64_t full = cols / kColBlock * kColBlock;
  float s = 0.f;
  int64_t c0 = 0;
  for (; c0 + 4 * kColBlock <= full; c0 += 4 * kColBlock) blocks_one_token<D, 4>(w, x, c0, s);
  switch ((full - c0) / kColBlock) {
    case 3: blocks_one_token<D, 3>(w, x, c0, s); break;
    case 2: blocks_one_token<D, 2>(w, x, c0, s); break;
    case 1: blocks_one_token<D, 1>(w, x, c0, s); break;
    default: break;
  }
  if (full < cols) {
    __m256 acc = _mm256_setzero_ps();
    int64_t k = full;
    for (; k + 8 <= cols; k += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(x + k), load8<D>(w + k * es), acc);
    if (k < cols) {
      alignas(32) float t[8] = {0, 0, 0, 0, 0, 0, 0, 0};
      for (int64_t j = 0; j < cols - k; ++j) t[j] = load_scalar<D>(w, k + j);
      acc = _mm256_fmadd_ps(_mm256_maskload_ps(x + k, tail_mask(cols - k)), _mm256_load_ps(t), acc);
    }
    s += hsum(acc);
  }
  return s;
}
#endif

// out[m][r] (stride ldo) += sum_k x[m][k] * t[r][k] for MR input rows and NR tile rows, K columns.
template <int MR, int NR>
inline void micro(const float* x, int64_t ldx, const float* t, int64_t ldt, int64_t K, float* out, int64_t ldo) {
  int64_t k = 0;
#ifdef UPG_DENSE_AVX2
  __m256 acc[MR][NR];
  for (int m = 0; m < MR; ++m)
    for (int r = 0; r < NR; ++r) acc[m][r] = _mm256_setzero_ps();
  for (; k + 8 <= K; k += 8) {
    __m256 xv[MR];
    for (int m = 0; m < MR; ++m) xv[m] = _mm256_loadu_ps(x + m * ldx + k);
    for (int r = 0; r < NR; ++r) {
      const __m256 wv = _mm256_loadu_ps(t + r * ldt + k);
      for (int m = 0; m < MR; ++m) acc[m][r] = _mm256_fmadd_ps(xv[m], wv, acc[m][r]);
    }
  }
  if (k < K) {  // column tail: masked loads read zeros past K (the same chain as row_one_token)
    const __m256i mask = tail_mask(K - k);
    __m256 xv[MR];
    for (int m = 0; m < MR; ++m) xv[m] = _mm256_maskload_ps(x + m * ldx + k, mask);
    for (int r = 0; r < NR; ++r) {
      const __m256 wv = _mm256_maskload_ps(t + r * ldt + k, mask);
      for (int m = 0; m < MR; ++m) acc[m][r] = _mm256_fmadd_ps(xv[m], wv, acc[m][r]);
    }
  }
  for (int m = 0; m < MR; ++m)
    for (int r = 0; r < NR; ++r) out[m * ldo + r] += hsum(acc[m][r]);
#else
  for (; k < K; ++k)
    for (int m = 0; m < MR; ++m)
      for (int r = 0; r < NR; ++r) out[m * ldo + r] += x[m * ldx + k] * t[r * ldt + k];
#endif
}

using MicroFn = void (*)(const float*, int64_t, const float*, int64_t, int64_t, float*, int64_t);
constexpr MicroFn kMicro[3][4] = {
    {micro<1, 1>, micro<1, 2>, micro<1, 3>, micro<1, 4>},
    {micro<2, 1>, micro<2, 2>, micro<2, 3>, micro<2, 4>},
    {micro<3, 1>, micro<3, 2>, micro<3, 3>, micro<3, 4>},
};

template <TensorDType D>
void matmul_impl(const uint8_t* W, int64_t rows, int64_t cols, const float* x, int64_t n, float* y) {
  constexpr size_t es = elem_size<D>();
#ifdef UPG_DENSE_AVX2
  if (n == 1) {  // decode: the tiled path's sums (row_one_token)
    parallel_for(rows, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) y[r] = row_one_token<D>(W + static_cast<size_t>(r) * cols * es, x, cols);
    });
    return;
  }
#endif
  const int64_t nblocks = (rows + kRowBlock - 1) / kRowBlock;
  parallel_for_dynamic(nblocks, 1, [&](int64_t b0, int64_t b1) {
    thread_local std::vector<float> tile(static_cast<size_t>(kRowBlock * kColBlock));  // per thread, kept
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t r0 = b * kRowBlock, nr = std::min(kRowBlock, rows - r0);
      for (int64_t i = 0; i < n; ++i) std::fill(y + i * rows + r0, y + i * rows + r0 + nr, 0.f);
      for (int64_t k0 = 0; k0 < cols; k0 += kColBlock) {
        const int64_t kc = std::min(kColBlock, cols - k0);
        for (int64_t r = 0; r < nr; ++r)
          convert<D>(W + static_cast<size_t>(r0 + r) * cols * es, k0, kc, tile.data() + r * kColBlock);
        for (int64_t i = 0; i < n; i += 3) {
          const int mr = static_cast<int>(std::min<int64_t>(3, n - i));
          for (int64_t r = 0; r < nr; r += 4) {
            const int nrr = static_cast<int>(std::min<int64_t>(4, nr - r));
            kMicro[mr - 1][nrr - 1](x + i * cols + k0, cols, tile.data() + r * kColBlock, kColBlock, kc,
                                    y + i * rows + r0 + r, rows);
          }
        }
      }
    }
  });
}

}  // namespace

DenseMatrix::DenseMatrix(const uint8_t* data, TensorDType dtype, int64_t rows, int64_t cols)
    : WeightMatrix(rows, cols), data_(data), dtype_(dtype) {
  UPG_CHECK(dtype == TensorDType::F32 || dtype == TensorDType::F16 || dtype == TensorDType::BF16,
            "dense matrix: unsupported dtype ", tensor_dtype_name(dtype), " (supported: F32, F16, BF16)");
  UPG_CHECK(rows > 0 && cols > 0, "dense matrix: rows and cols must be positive, got ", rows, " x ", cols);
}

void DenseMatrix::matmul(const float* x, int64_t n, float* y) const {
  if (n <= 0) return;
  switch (dtype_) {
    case TensorDType::F32: return matmul_impl<TensorDType::F32>(data_, rows_, cols_, x, n, y);
    case TensorDType::F16: return matmul_impl<TensorDType::F16>(data_, rows_, cols_, x, n, y);
    default: return matmul_impl<TensorDType::BF16>(data_, rows_, cols_, x, n, y);
  }
}

void DenseMatrix::matmul_reference(const float* x, int64_t n, float* y) const {
  std::vector<float> row(static_cast<size_t>(cols_));
  for (int64_t r = 0; r < rows_; ++r) {
    decode_rows(r, r + 1, row.data());
    for (int64_t i = 0; i < n; ++i) {
      double s = 0;
      for (int64_t k = 0; k < cols_; ++k) s += static_cast<double>(x[i * cols_ + k]) * row[k];
      y[i * rows_ + r] = static_cast<float>(s);
    }
  }
}

void DenseMatrix::decode_rows(int64_t r0, int64_t r1, float* out) const {
  UPG_CHECK(0 <= r0 && r0 <= r1 && r1 <= rows_, "dense matrix: rows [", r0, ", ", r1, ") out of range [0, ", rows_, ")");
  const int64_t i = r0 * cols_, count = (r1 - r0) * cols_;
  switch (dtype_) {
    case TensorDType::F32: return convert<TensorDType::F32>(data_, i, count, out);
    case TensorDType::F16: return convert<TensorDType::F16>(data_, i, count, out);
    default: return convert<TensorDType::BF16>(data_, i, count, out);
  }
}

void DenseMatrix::decode_rows_bf16(int64_t r0, int64_t r1, uint16_t* out) const {
  UPG_CHECK(0 <= r0 && r0 <= r1 && r1 <= rows_, "dense matrix: rows [", r0, ", ", r1, ") out of range [0, ", rows_, ")");
  const size_t es = tensor_dtype_size(dtype_);
  parallel_for(r1 - r0, [&](int64_t i0, int64_t i1) {
    std::vector<float> buf(dtype_ == TensorDType::BF16 ? 0 : static_cast<size_t>(cols_));
    for (int64_t r = r0 + i0; r < r0 + i1; ++r) {
      const uint8_t* src = data_ + static_cast<size_t>(r) * cols_ * es;
      uint16_t* dst = out + (r - r0) * cols_;
      if (dtype_ == TensorDType::BF16) {
        std::memcpy(dst, src, static_cast<size_t>(cols_) * 2);
      } else {  // src may be unaligned: convert (memcpy/unaligned loads) into buf first
        if (dtype_ == TensorDType::F32) convert<TensorDType::F32>(src, 0, cols_, buf.data());
        else convert<TensorDType::F16>(src, 0, cols_, buf.data());
        kernels::f32_to_bf16_n(buf.data(), dst, cols_);
      }
    }
  });
}

std::string DenseMatrix::codec() const {
  switch (dtype_) {
    case TensorDType::F32: return "f32";
    case TensorDType::F16: return "f16";
    default: return "bf16";
  }
}

size_t DenseMatrix::stored_bytes() const {
  return static_cast<size_t>(rows_) * static_cast<size_t>(cols_) * tensor_dtype_size(dtype_);
}

std::unique_ptr<WeightMatrix> make_weight_matrix(const TensorView& t) {
  UPG_CHECK(t.shape.size() == 2, "tensor '", t.name, "' has shape ", t.shape_str(), ", expected a 2-D matrix");
  UPG_CHECK(t.dtype == TensorDType::F32 || t.dtype == TensorDType::F16 || t.dtype == TensorDType::BF16, "tensor '",
            t.name, "' has unsupported dtype ", tensor_dtype_name(t.dtype), " (supported: F32, F16, BF16)");
  return std::make_unique<DenseMatrix>(t.data, t.dtype, t.shape[0], t.shape[1]);
}

std::vector<float> tensor_to_f32(const TensorView& t) {
  std::vector<float> v(static_cast<size_t>(t.numel()));
  switch (t.dtype) {
    case TensorDType::F32: convert<TensorDType::F32>(t.data, 0, t.numel(), v.data()); break;
    case TensorDType::F16: convert<TensorDType::F16>(t.data, 0, t.numel(), v.data()); break;
    case TensorDType::BF16: convert<TensorDType::BF16>(t.data, 0, t.numel(), v.data()); break;
    default:
      throw Error(str_cat("tensor '", t.name, "' has unsupported dtype ", tensor_dtype_name(t.dtype),
                          " (supported: F32, F16, BF16)"));
  }
  return v;
}

}  // namespace upg
