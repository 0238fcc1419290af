#include "convert/gptq.h"

#include <cmath>
#include <functional>

#include "base/error.h"
#include "base/half.h"
#include "codecs/codebook/codebook_codec.h"
#include "codecs/codebook/levels.h"
#include "codecs/codec_registry.h"
#include "codecs/codec_util.h"
#include "codecs/compose.h"
#include "codecs/dense/dense_matrix.h"

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
  // D H for blocks of rows with the engine's tiled fp32 GEMM (H is symmetric, so D H^T = D H),
  // then the sum of D .* (D H); the reduction is in double.
  const DenseMatrix Hm(reinterpret_cast<const uint8_t*>(h.matrix().data()), TensorDType::F32, cols, cols);
  const int64_t block = 256;
  std::vector<float> D(static_cast<size_t>(block * cols)), Y(static_cast<size_t>(block * cols));
  for (int64_t r0 = 0; r0 < rows; r0 += block) {
    const int64_t n = std::min(block, rows - r0);
    for (int64_t i = 0; i < n * cols; ++i) D[i] = A[r0 * cols + i] - (B ? B[r0 * cols + i] : 0.f);
    Hm.matmul(D.data(), n, Y.data());
#pragma omp parallel for reduction(+ : total) schedule(static)
    for (int64_t r = 0; r < n; ++r) {
      double s = 0;
      #pragma omp simd reduction(+ : s)
      for (int64_t j = 0; j < cols; ++j) s += static_cast<double>(D[r * cols + j]) * Y[r * cols + j];
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
  return gptq_inverse_factor(h.matrix().data(), h.cols(), damp);
}

std::vector<float> rotated_statistics(const InputStats& h, const RotateOpt& rot) {
  UPG_CHECK(h.full(), "gptq: rotation needs the full input statistics");
  const int64_t n = h.cols();
  const std::vector<float> signs = rotation_signs(rot.seed, n);
  std::vector<float> A = h.matrix(), T(static_cast<size_t>(n * n));
  // R^T H R: rotate the rows (H R), transpose, rotate the rows again.
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) rotate_row(A.data() + i * n, n, signs.data(), rot.block);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j) T[j * n + i] = A[i * n + j];
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) rotate_row(T.data() + i * n, n, signs.data(), rot.block);
  return T;
}

std::vector<float> gptq_inverse_factor(const float* H, int64_t n, double damp) {
  std::vector<double> A(static_cast<size_t>(n * n));
  double mean = 0;
  for (int64_t i = 0; i < n; ++i) mean += std::max(0.0f, H[i * n + i]);
  mean = n ? mean / n : 0;
  if (!(mean > 0)) mean = 1;
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j) A[i * n + j] = H[i * n + j];
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
      #pragma omp simd reduction(+ : s)
      for (int64_t k = 0; k < j; ++k) s -= ai[k] * aj[k];
      A[i * n + j] = s / ljj;
    }
  }
  // 2. M = L^-1 (lower), stored transposed (Mt[c][k] = M[k][c]) so every inner loop is contiguous:
  //    M[i][c] = -(sum_{k=c..i-1} L[i][k] M[k][c]) / L[i][i].
  std::vector<double> Mt(static_cast<size_t>(n * n), 0.0);
#pragma omp parallel for schedule(dynamic, 16)
  for (int64_t c = 0; c < n; ++c) {
    double* mc = Mt.data() + c * n;
    mc[c] = 1.0 / A[c * n + c];
    for (int64_t i = c + 1; i < n; ++i) {
      const double* ai = A.data() + i * n;
      double s = 0;
      #pragma omp simd reduction(+ : s)
      for (int64_t k = c; k < i; ++k) s += ai[k] * mc[k];
      mc[i] = -s / ai[i];
    }
  }
  // 3. P = A^-1 = M^T M: P[i][j] = sum_{k >= max(i, j)} M[k][i] M[k][j] (upper triangle used).
  std::vector<double> P(static_cast<size_t>(n * n));
#pragma omp parallel for schedule(dynamic, 16)
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = i; j < n; ++j) {
      const double* mi = Mt.data() + i * n;
      const double* mj = Mt.data() + j * n;
      double s = 0;
      #pragma omp simd reduction(+ : s)
      for (int64_t k = j; k < n; ++k) s += mi[k] * mj[k];
      P[i * n + j] = s;
    }
  // 4. The upper Cholesky factor U of P (P = U^T U), built as its transpose Ut (lower, row i =
  //    column i of U): U_ii = sqrt(P_ii - sum_{k<i} U_ki^2), U_ij = (P_ij - sum_{k<i} U_ki U_kj) / U_ii.
  std::vector<double> Ut(static_cast<size_t>(n * n), 0.0);
  for (int64_t i = 0; i < n; ++i) {
    const double* ui = Ut.data() + i * n;
    double d = P[i * n + i];
    for (int64_t k = 0; k < i; ++k) d -= ui[k] * ui[k];
    UPG_CHECK(d > 0, "gptq: inverse statistics are not positive definite at column ", i);
    const double uii = std::sqrt(d);
    Ut[i * n + i] = uii;
#pragma omp parallel for schedule(static)
    for (int64_t j = i + 1; j < n; ++j) {
      const double* uj = Ut.data() + j * n;
      double s = P[i * n + j];
      #pragma omp simd reduction(+ : s)
      for (int64_t k = 0; k < i; ++k) s -= ui[k] * uj[k];
      Ut[j * n + i] = s / uii;
    }
  }
  std::vector<float> U(static_cast<size_t>(n * n), 0.f);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = i; j < n; ++j) U[i * n + j] = static_cast<float>(Ut[j * n + i]);
  return U;
}

std::vector<float> decode_encoded(const EncodedTensor& enc, int64_t rows, int64_t cols) {
  std::vector<float> out(static_cast<size_t>(rows * cols));
  auto m = make_codec(enc.codec)->open(enc.views(), rows, cols, enc.params);
  m->decode_rows(0, rows, out.data());
  return out;
}

void refit_group_scales(const float* W, int64_t rows, int64_t cols, const float* H, int64_t group,
                        const std::function<void(int64_t, float*)>& unit_row, std::vector<float>& scales) {
  const int64_t ng = (cols + group - 1) / group;
#pragma omp parallel
  {
    std::vector<double> t(static_cast<size_t>(cols)), G(static_cast<size_t>(ng * ng)), b(static_cast<size_t>(ng));
    std::vector<float> lv(static_cast<size_t>(cols));
#pragma omp for schedule(dynamic, 8)
    for (int64_t r = 0; r < rows; ++r) {
      unit_row(r, lv.data());
      const float* w = W + r * cols;
      for (int64_t g = 0; g < ng; ++g) {
        // t = H B_g^T (H symmetric: rows of H over the group's columns).
        std::fill(t.begin(), t.end(), 0.0);
        const int64_t c0 = g * group, c1 = std::min(cols, c0 + group);
        for (int64_t j = c0; j < c1; ++j) {
          if (lv[j] == 0.f) continue;
          const float* hj = H + j * cols;
          const double a = lv[j];
#pragma omp simd
          for (int64_t i = 0; i < cols; ++i) t[i] += a * hj[i];
        }
        double bw = 0;
#pragma omp simd reduction(+ : bw)
        for (int64_t i = 0; i < cols; ++i) bw += t[i] * w[i];
        b[g] = bw;
        for (int64_t h2 = 0; h2 < ng; ++h2) {
          const int64_t d0 = h2 * group, d1 = std::min(cols, d0 + group);
          double sgh = 0;
          for (int64_t i = d0; i < d1; ++i) sgh += t[i] * lv[i];
          G[g * ng + h2] = sgh;
        }
      }
      // Cholesky of G (+ ridge) in place, then two triangular solves.
      double tr = 0;
      for (int64_t g = 0; g < ng; ++g) tr += G[g * ng + g];
      if (!(tr > 0)) continue;
      const double ridge = 1e-9 * tr / static_cast<double>(ng);
      bool ok = true;
      for (int64_t j = 0; j < ng && ok; ++j) {
        double d = G[j * ng + j] + ridge;
        for (int64_t k = 0; k < j; ++k) d -= G[j * ng + k] * G[j * ng + k];
        if (!(d > 0)) { ok = false; break; }
        d = std::sqrt(d);
        G[j * ng + j] = d;
        for (int64_t i = j + 1; i < ng; ++i) {
          double v = G[i * ng + j];
          for (int64_t k = 0; k < j; ++k) v -= G[i * ng + k] * G[j * ng + k];
          G[i * ng + j] = v / d;
        }
      }
      if (!ok) continue;
      for (int64_t i = 0; i < ng; ++i) {  // L y = b
        double v = b[i];
        for (int64_t k = 0; k < i; ++k) v -= G[i * ng + k] * b[k];
        b[i] = v / G[i * ng + i];
      }
      for (int64_t i = ng - 1; i >= 0; --i) {  // L^T s = y
        double v = b[i];
        for (int64_t k = i + 1; k < ng; ++k) v -= G[k * ng + i] * b[k];
        b[i] = v / G[i * ng + i];
      }
      for (int64_t g = 0; g < ng; ++g) {
        const float sv = f16_to_f32(f32_to_f16(static_cast<float>(b[g])));
        if (std::isfinite(sv)) scales[r * ng + g] = sv;
      }
    }
  }
}

PassInput pass_input(const float* W, int64_t rows, int64_t cols, const InputStats& h, const GptqFactor& f) {
  PassInput in;
  in.W = W;
  in.d = h.diag().data();
  if (!f.rotate.on) return in;
  in.Wr.assign(W, W + rows * cols);
  const std::vector<float> signs = rotation_signs(f.rotate.seed, cols);
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) rotate_row(in.Wr.data() + r * cols, cols, signs.data(), f.rotate.block);
  const float* Hr = f.stats(h);
  in.dr.resize(cols);
  for (int64_t j = 0; j < cols; ++j) in.dr[j] = std::max(0.0f, Hr[j * cols + j]);
  in.W = in.Wr.data();
  in.d = in.dr.data();
  return in;
}

void check_factor(const GptqFactor& f, const RotateOpt& rot, int64_t cols, const char* who) {
  UPG_CHECK(f.rotate.on == rot.on && f.rotate.seed == rot.seed && (!rot.on || f.rotate.block == rot.block) &&
                f.U.size() == static_cast<size_t>(cols * cols),
            who, ": the factor was made for another rotation or size");
}

GptqFactor make_gptq_factor(const InputStats& h, const RotateOpt& rot, const GptqOptions& o) {
  UPG_CHECK(h.full(), "gptq: needs the full input statistics");
  const int64_t n = h.cols();
  GptqFactor f;
  f.rotate = rot;
  if (rot.on) f.H_rot = rotated_statistics(h, rot);
  std::vector<float> H = rot.on ? f.H_rot : h.matrix();
  f.perm.resize(n);
  for (int64_t j = 0; j < n; ++j) f.perm[j] = j;
  if (o.act_order) {
    // Columns with the largest input energy first (GPTQ's "act-order"): their errors are spread
    // over the most remaining columns. Stable, so equal energies keep their order.
    std::stable_sort(f.perm.begin(), f.perm.end(),
                     [&](int64_t a, int64_t b) { return H[a * n + a] > H[b * n + b]; });
    std::vector<float> P(static_cast<size_t>(n * n));
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < n; ++j) P[i * n + j] = H[f.perm[i] * n + f.perm[j]];
    H.swap(P);
  }
  f.U = gptq_inverse_factor(H.data(), n, o.damp);
  return f;
}

EncodedTensor gptq_codebook(const float* W, int64_t rows, int64_t cols, const InputStats& h,
                            const CodecParams& params, const GptqOptions& o, std::vector<float>* decoded,
                            const GptqFactor* factor) {
  UPG_CHECK(!params.contains("outliers"), "gptq: the 'outliers' option is not supported with GPTQ");
  UPG_CHECK(h.cols() == cols, "gptq: statistics have ", h.cols(), " columns, the weight has ", cols);
  if (!h.full()) {  // importance-weighted rounding by the codec itself (it handles "rotate")
    EncodedTensor rtn = make_codec("codebook")->encode(W, rows, cols, params, h.diag().data());
    if (decoded) *decoded = decode_encoded(rtn, rows, cols);
    return rtn;
  }
  const RotateOpt rot = read_rotate(params, "codebook", cols, /*encoding=*/true);
  GptqFactor own;
  if (!factor) {
    own = make_gptq_factor(h, rot, o);
    factor = &own;
  }
  check_factor(*factor, rot, cols, "gptq");
  CodecParams core = params.is_object() ? params : CodecParams::object();
  core.erase("rotate");
  // The whole pass runs in the rotated basis: W R with R^T H R (whose diagonal is the importance).
  const PassInput in = pass_input(W, rows, cols, h, *factor);
  const float* Wp = in.W;
  const float* dp = in.d;
  // Static grid: the codec's importance-weighted encoder fixes levels and group scales.
  EncodedTensor rtn = make_codec("codebook")->encode(Wp, rows, cols, core, dp);
  const CodebookLayout l = read_codebook_layout(rtn.params, rows, cols);
  const int nl = 1 << l.k;
  const int64_t cb = l.cb_rows == 0 ? rows : l.cb_rows;
  std::vector<float> scales(static_cast<size_t>(rows * l.ngroups)), levels(static_cast<size_t>(l.nblocks * nl));
  for (size_t i = 0; i < scales.size(); ++i) scales[i] = load_f16(rtn.arrays.at("scales").bytes.data(), i);
  for (size_t i = 0; i < levels.size(); ++i) levels[i] = load_le<float>(rtn.arrays.at("codebook").bytes.data(), i);

  const std::vector<float>& U = factor->U;
  const std::vector<int64_t>& perm = factor->perm;
  std::vector<uint8_t> codes(static_cast<size_t>(rows * cols));
#pragma omp parallel
  {
    std::vector<float> w(static_cast<size_t>(cols));
#pragma omp for schedule(dynamic, 4)
    for (int64_t r = 0; r < rows; ++r) {
      // w in the factor's column order: position p holds column perm[p].
      for (int64_t p = 0; p < cols; ++p) w[p] = Wp[r * cols + perm[p]];
      const float* L = levels.data() + (r / cb) * nl;
      const LevelSearch nearest(L, nl);
      const int zero_code = nearest(0.f);
      for (int64_t p = 0; p < cols; ++p) {
        const int64_t j = perm[p];
        const float s = scales[r * l.ngroups + j / l.group];
        int c = zero_code;
        if (s != 0.f) c = nearest(w[p] / s);
        const float q = s * L[c];
        codes[r * cols + j] = static_cast<uint8_t>(c);
        const float* up = U.data() + p * cols;
        const float e = (w[p] - q) / up[p];
        for (int64_t t = p + 1; t < cols; ++t) w[t] -= e * up[t];
      }
    }
  }
  if (o.refit_scales)
    refit_group_scales(Wp, rows, cols, factor->stats(h), l.group, [&](int64_t r, float* lv) {
      const float* L = levels.data() + (r / cb) * nl;
      for (int64_t j = 0; j < cols; ++j) lv[j] = L[codes[r * cols + j]];
    }, scales);
  EncodedTensor out = codebook_from_codes(rtn.params, rows, cols, codes.data(), scales.data(), levels.data());
  if (rot.on) out.params["rotate"] = {{"seed", rot.seed}, {"block", rot.block}};
  if (decoded) *decoded = decode_encoded(out, rows, cols);  // in the original basis
  return out;
}

}  // namespace upg
