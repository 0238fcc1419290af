#include "convert/gptq.h"

#include <cmath>

#include "base/error.h"
#include "base/half.h"
#include "codecs/codebook/codebook_codec.h"
#include "codecs/codebook/levels.h"
#include "codecs/codec_registry.h"
#include "codecs/codec_util.h"

namespace upg {

double output_error(const float* A, const float* B, int64_t rows, int64_t cols, const InputStats& h) {
  double total = 0;
  if (!h.full()) {
    const float* d = h.diag().data();
#pragma omp parallel for reduction(+ : total) schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      double s = 0;
      for (int64_t j = 0; j < cols; ++j) {
        const double e = static_cast<double>(A[r * cols + j]) - (B ? B[r * cols + j] : 0.f);
        s += d[j] * e * e;
      }
      total += s;
    }
    return total;
  }
  const float* H = h.matrix().data();
#pragma omp parallel reduction(+ : total)
  {
    std::vector<float> dr(static_cast<size_t>(cols));
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t j = 0; j < cols; ++j) dr[j] = A[r * cols + j] - (B ? B[r * cols + j] : 0.f);
      double s = 0;
      for (int64_t i = 0; i < cols; ++i) {
        if (dr[i] == 0.f) continue;
        const float* hi = H + i * cols;
        float acc = 0;
        for (int64_t j = 0; j < cols; ++j) acc += hi[j] * dr[j];
        s += static_cast<double>(dr[i]) * acc;
      }
      total += s;
    }
  }
  return total;
}

double output_energy(const float* W, int64_t rows, int64_t cols, const InputStats& h) {
  return output_error(W, nullptr, rows, cols, h);
}

std::vector<float> gptq_inverse_factor(const InputStats& h, double damp) {
  UPG_CHECK(h.full(), "gptq: needs the full input statistics");
  const int64_t n = h.cols();
  std::vector<double> A(static_cast<size_t>(n * n));
  double mean = 0;
  for (int64_t i = 0; i < n; ++i) mean += h.diag()[i];
  mean = n ? mean / n : 0;
  if (!(mean > 0)) mean = 1;
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j) A[i * n + j] = h.matrix()[i * n + j];
  for (int64_t i = 0; i < n; ++i) {
    if (A[i * n + i] <= 0) A[i * n + i] = mean;  // never-activated input: any value works
    A[i * n + i] += damp * mean;
  }
  // 1. Cholesky A = L L^T (L lower, in place).
  for (int64_t j = 0; j < n; ++j) {
    double d = A[j * n + j];
    for (int64_t k = 0; k < j; ++k) d -= A[j * n + k] * A[j * n + k];
    UPG_CHECK(d > 0, "gptq: input statistics are not positive definite at column ", j);
    const double ljj = std::sqrt(d);
    A[j * n + j] = ljj;
#pragma omp parallel for schedule(static)
    for (int64_t i = j + 1; i < n; ++i) {
      double s = A[i * n + j];
      const double* ai = A.data() + i * n;
      const double* aj = A.data() + j * n;
      for (int64_t k = 0; k < j; ++k) s -= ai[k] * aj[k];
      A[i * n + j] = s / ljj;
    }
  }
  // 2. M = L^-1 (lower), by forward substitution, column block by column.
  std::vector<double> M(static_cast<size_t>(n * n), 0.0);
#pragma omp parallel for schedule(dynamic, 16)
  for (int64_t c = 0; c < n; ++c) {
    M[c * n + c] = 1.0 / A[c * n + c];
    for (int64_t i = c + 1; i < n; ++i) {
      double s = 0;
      for (int64_t k = c; k < i; ++k) s += A[i * n + k] * M[k * n + c];
      M[i * n + c] = -s / A[i * n + i];
    }
  }
  // 3. A^-1 = M^T M; its upper Cholesky factor U (A^-1 = U^T U) is the lower-triangular-reversed
  // factor: with the exchange J, U = J chol(J A^-1 J)^T J. Computed directly by the "upper-first"
  // Cholesky recursion on P = A^-1: U_ii = sqrt(P_ii - sum_{k<i} U_ki^2), U_ij = (P_ij - sum_{k<i}
  // U_ki U_kj) / U_ii.
  std::vector<double> P(static_cast<size_t>(n * n));
#pragma omp parallel for schedule(dynamic, 16)
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = i; j < n; ++j) {
      double s = 0;
      for (int64_t k = j; k < n; ++k) s += M[k * n + i] * M[k * n + j];  // M lower: k >= max(i, j)
      P[i * n + j] = s;
    }
  std::vector<double> U(static_cast<size_t>(n * n), 0.0);
  for (int64_t i = 0; i < n; ++i) {
    double d = P[i * n + i];
    for (int64_t k = 0; k < i; ++k) d -= U[k * n + i] * U[k * n + i];
    UPG_CHECK(d > 0, "gptq: inverse statistics are not positive definite at column ", i);
    const double uii = std::sqrt(d);
    U[i * n + i] = uii;
#pragma omp parallel for schedule(static)
    for (int64_t j = i + 1; j < n; ++j) {
      double s = P[i * n + j];
      for (int64_t k = 0; k < i; ++k) s -= U[k * n + i] * U[k * n + j];
      U[i * n + j] = s / uii;
    }
  }
  return std::vector<float>(U.begin(), U.end());
}

std::vector<float> decode_encoded(const EncodedTensor& enc, int64_t rows, int64_t cols) {
  std::vector<float> out(static_cast<size_t>(rows * cols));
  auto m = make_codec(enc.codec)->open(enc.views(), rows, cols, enc.params);
  m->decode_rows(0, rows, out.data());
  return out;
}

EncodedTensor gptq_codebook(const float* W, int64_t rows, int64_t cols, const InputStats& h,
                            const CodecParams& params, const GptqOptions& o, std::vector<float>* decoded,
                            const std::vector<float>* U_given) {
  UPG_CHECK(!params.contains("rotate") && !params.contains("outliers"),
            "gptq: the 'rotate' and 'outliers' options are not supported with GPTQ");
  UPG_CHECK(h.cols() == cols, "gptq: statistics have ", h.cols(), " columns, the weight has ", cols);
  // Static grid: the codec's importance-weighted encoder fixes levels and group scales.
  EncodedTensor rtn = make_codec("codebook")->encode(W, rows, cols, params, h.diag().data());
  if (!h.full()) {
    if (decoded) *decoded = decode_encoded(rtn, rows, cols);
    return rtn;
  }
  const CodebookLayout l = read_codebook_layout(rtn.params, rows, cols);
  const int nl = 1 << l.k;
  const int64_t cb = l.cb_rows == 0 ? rows : l.cb_rows;
  std::vector<float> scales(static_cast<size_t>(rows * l.ngroups)), levels(static_cast<size_t>(l.nblocks * nl));
  for (size_t i = 0; i < scales.size(); ++i) scales[i] = load_f16(rtn.arrays.at("scales").bytes.data(), i);
  for (size_t i = 0; i < levels.size(); ++i) levels[i] = load_le<float>(rtn.arrays.at("codebook").bytes.data(), i);

  std::vector<float> U_own;
  if (!U_given) U_own = gptq_inverse_factor(h, o.damp);
  const std::vector<float>& U = U_given ? *U_given : U_own;
  std::vector<uint8_t> codes(static_cast<size_t>(rows * cols));
  if (decoded) decoded->assign(static_cast<size_t>(rows * cols), 0.f);
#pragma omp parallel
  {
    std::vector<float> w(static_cast<size_t>(cols));
#pragma omp for schedule(dynamic, 4)
    for (int64_t r = 0; r < rows; ++r) {
      std::copy(W + r * cols, W + (r + 1) * cols, w.begin());
      const float* L = levels.data() + (r / cb) * nl;
      const int zero_code = nearest_level(L, nl, 0.f);
      for (int64_t i = 0; i < cols; ++i) {
        const float s = scales[r * l.ngroups + i / l.group];
        int c = zero_code;
        if (s != 0.f) c = nearest_level(L, nl, w[i] / s);
        const float q = s * L[c];
        codes[r * cols + i] = static_cast<uint8_t>(c);
        if (decoded) (*decoded)[r * cols + i] = q;
        const float* ui = U.data() + i * cols;
        const float e = (w[i] - q) / ui[i];
        for (int64_t j = i + 1; j < cols; ++j) w[j] -= e * ui[j];
      }
    }
  }
  return codebook_from_codes(rtn.params, rows, cols, codes.data(), scales.data(), levels.data());
}

}  // namespace upg
