// codebook encoder: level tables, per-group least-squares scales, weighted Lloyd refinement.
#include <algorithm>
#include <cmath>

#include "codecs/codebook/codebook_codec.h"
#include "codecs/codebook/levels.h"
#include "codecs/codec_util.h"

namespace upg {

namespace {

const char* kName = "codebook";

// Chooses the scale of one group (n weights w, importances h or null) for the ascending table
// L (nl levels) and writes the codes. Returns the f16-representable scale.
float fit_group(const float* w, const float* h, int64_t n, const float* L, int nl, bool try_negative,
                uint8_t* codes) {
  float wmax = -INFINITY, wmin = INFINITY;
  for (int64_t i = 0; i < n; ++i) {
    wmax = std::max(wmax, w[i]);
    wmin = std::min(wmin, w[i]);
  }
  const LevelSearch nearest(L, nl);
  const int zero_code = nearest(0.0f);
  float best_s = 0.0f;
  double best_err = 0.0;  // error relative to the all-zero reconstruction (sum h w^2)
  for (int sign : {1, -1}) {
    if (sign < 0 && !try_negative) break;
    const float hi = sign > 0 ? wmax : -wmin, lo = sign > 0 ? wmin : -wmax;  // of sign * w
    float base = 0.0f;  // |s| at which every weight fits inside [Lmin, Lmax]
    if (L[nl - 1] > 0 && hi > 0) base = std::max(base, hi / L[nl - 1]);
    if (L[0] < 0 && lo < 0) base = std::max(base, lo / L[0]);
    if (!(base > 0)) continue;
    for (int step = 0; step <= 20; ++step) {
      const float s = sign * base * (0.4f + 0.04f * step);
      const float inv = 1.0f / s;
      double A = 0, B = 0;
      for (int64_t i = 0; i < n; ++i) {
        const float l = L[nearest(w[i] * inv)];
        const double hi_ = h ? h[i] : 1.0;
        A += hi_ * w[i] * l;
        B += hi_ * l * l;
      }
      if (B <= 0) continue;
      const double err = -A * A / B;
      if (err < best_err) {
        best_err = err;
        best_s = static_cast<float>(A / B);
      }
    }
  }
  best_s = f16_to_f32(f32_to_f16(best_s));
  if (!std::isfinite(best_s)) best_s = 0.0f;
  if (best_s == 0.0f) {
    std::fill(codes, codes + n, static_cast<uint8_t>(zero_code));
    return 0.0f;
  }
  const float inv = 1.0f / best_s;
  for (int64_t i = 0; i < n; ++i) codes[i] = static_cast<uint8_t>(nearest(w[i] * inv));
  return best_s;
}

}  // namespace

CodebookLayout read_codebook_layout(const CodecParams& p, int64_t rows, int64_t cols) {
  CodebookLayout l;
  l.k = static_cast<int>(param_int(p, kName, "bits", 3, 1, 8));
  l.group = param_int(p, kName, "group", 64, 8, INT32_MAX);
  UPG_CHECK(l.group % 8 == 0, kName, ": param 'group' = ", l.group, " must be a multiple of 8");
  l.ngroups = (cols + l.group - 1) / l.group;
  l.row_bytes = (cols * l.k + 7) / 8;
  l.cb_rows = param_int(p, kName, "codebook_rows", 0, 0, INT64_MAX);
  const int64_t cb = l.cb_rows == 0 ? rows : l.cb_rows;
  l.nblocks = (rows + cb - 1) / cb;
  l.levels = param_str(p, kName, "levels", "fitted", {"fitted", "gaussian", "prime"});
  l.prime_offset = param_int(p, kName, "prime_offset", 0, 0, kNumPrimes - 1);
  l.lloyd_iters = param_int(p, kName, "lloyd_iters", 3, 0, 100);
  return l;
}

EncodedTensor CodebookCodec::encode_core(const float* W, int64_t rows, int64_t cols,
                                         const CodecParams& params, const float* importance) const {
  const CodebookLayout l = read_codebook_layout(params, rows, cols);
  const int nl = 1 << l.k;
  const int64_t cb = l.cb_rows == 0 ? rows : l.cb_rows;
  std::vector<float> base;
  if (l.levels == "prime") base = prime_levels(l.k, static_cast<int>(l.prime_offset));
  else base = gaussian_levels(l.k);

  std::vector<uint8_t> codes(static_cast<size_t>(rows * cols));
  std::vector<float> scales(static_cast<size_t>(rows * l.ngroups));
  Array codebook = make_array(DType::F32, {l.nblocks, nl});
  for (int64_t b = 0; b < l.nblocks; ++b) {
    const int64_t r0 = b * cb, r1 = std::min(rows, r0 + cb);
    std::vector<float> L = base;
    const int rounds = l.levels == "fitted" ? static_cast<int>(l.lloyd_iters) : 0;
    for (int round = 0; round <= rounds; ++round) {
      const bool symmetric = [&] {
        for (int i = 0; i < nl; ++i) if (L[i] != -L[nl - 1 - i]) return false;
        return true;
      }();
#pragma omp parallel for schedule(static)
      for (int64_t r = r0; r < r1; ++r)
        for (int64_t g = 0; g < l.ngroups; ++g) {
          const int64_t c0 = g * l.group, n = std::min(cols, c0 + l.group) - c0;
          scales[r * l.ngroups + g] = fit_group(W + r * cols + c0, importance ? importance + c0 : nullptr, n,
                                                L.data(), nl, !symmetric, codes.data() + r * cols + c0);
        }
      if (round == rounds) break;
      // Lloyd step on u = w / s with weights h * s^2 (the squared error in weight units).
      std::vector<float> u, wt;
      u.reserve((r1 - r0) * cols);
      wt.reserve((r1 - r0) * cols);
      for (int64_t r = r0; r < r1; ++r)
        for (int64_t c = 0; c < cols; ++c) {
          const float s = scales[r * l.ngroups + c / l.group];
          if (s == 0.0f) continue;
          u.push_back(W[r * cols + c] / s);
          wt.push_back((importance ? importance[c] : 1.0f) * s * s);
        }
      L = kmeans_1d(u.data(), wt.data(), u.size(), L, 25);
      const float mx = std::max(std::fabs(L.front()), std::fabs(L.back()));
      if (mx > 0) for (float& v : L) v /= mx;
    }
    for (int i = 0; i < nl; ++i) store_le<float>(codebook.bytes.data(), b * nl + i, L[i]);
  }

  Array q = make_array(DType::U8, {rows, l.row_bytes});
  for (int64_t r = 0; r < rows; ++r) {
    uint8_t* row = q.bytes.data() + r * l.row_bytes;
    for (int64_t j = 0; j < cols; ++j) {
      const uint32_t c = codes[r * cols + j];
      for (int t = 0; t < l.k; ++t) {
        const int64_t bit = j * l.k + t;
        row[bit >> 3] |= static_cast<uint8_t>(((c >> t) & 1u) << (bit & 7));
      }
    }
  }
  Array s = make_array(DType::F16, {rows, l.ngroups});
  for (size_t i = 0; i < scales.size(); ++i) store_le<uint16_t>(s.bytes.data(), i, f32_to_f16(scales[i]));

  EncodedTensor t;
  t.codec = kName;
  t.params = {{"bits", l.k}, {"group", l.group}, {"levels", l.levels}, {"codebook_rows", l.cb_rows}};
  if (l.levels == "prime") t.params["prime_offset"] = l.prime_offset;
  if (l.levels == "fitted") t.params["lloyd_iters"] = l.lloyd_iters;
  t.arrays["qweight"] = std::move(q);
  t.arrays["scales"] = std::move(s);
  t.arrays["codebook"] = std::move(codebook);
  return t;
}

}  // namespace upg
