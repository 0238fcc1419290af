// The integer-dot-product codebook path (kernels/cpu/codebook_q8.h): the fast kernel against the
// scalar reference of the same integer arithmetic (1e-5 of sum |w x|: integer block sums are
// exact, only the fp32 accumulation order differs), and the reference against the exact fp32
// product W x within the documented quantization bound. Codebook views built by hand from random
// codes, f16 scales (some negative) and ascending levels; odd row counts, cb_rows < rows, every
// supported k and several groups and token counts; outputs poisoned with NaN first. The kernel tests
// run once per SIMD path (AVX2, AVX-512 VNNI), each forced in turn; a path the CPU lacks is skipped
// with a message.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "base/cpu_features.h"
#include "base/half.h"
#include "kernels/cpu/codebook_kernels.h"
#include "kernels/cpu/codebook_q8.h"
#include "random_codebook.h"

using namespace upg;
using namespace upg::kernels;
using namespace upg::kernels::test_support;

namespace {

struct Errors {
  double max_rel_mag = 0;  // max |y - exact| / sum |w x|
  double max_rel_rms = 0;  // max |y - exact| / rms(exact y)
  double rms_rel = 0;      // rms(y - exact) / rms(exact y)
};

// Checks fast vs reference (1e-5 sum |w x|) and reference vs exact within the quantization bound
// sum_j (|s_j| a / 2 |x_j| + |w^_j| d_j / 2) (codebook_q8.h). Returns the reference's error.
Errors check(const RandomCodebook& c, const std::vector<float>& x, int64_t n, const std::string& what,
             int zero_block_token = -1) {
  const CodebookView& v = c.v;
  EXPECT_TRUE(codebook_q8_supported(v)) << what;
  const CodebookQ8Tables T = codebook_q8_tables(v);
  EXPECT_LE(T.max_level_err, 0.5f / 127.0f + 1e-6f) << what;
  std::vector<float> xs = x;
  if (zero_block_token >= 0)
    std::fill(xs.begin() + zero_block_token * v.cols, xs.begin() + zero_block_token * v.cols + 32, 0.0f);
  ActQ8 a;
  quantize_act_q8(xs.data(), n, v.cols, a);
  std::vector<float> yf(static_cast<size_t>(n * v.rows), NAN), yr(yf.size(), NAN);
  codebook_matmul_q8(v, T, a, yf.data());
  codebook_matmul_q8_reference(v, T, a, yr.data());
  std::vector<float> W(static_cast<size_t>(v.rows * v.cols));
  for (int64_t r = 0; r < v.rows; ++r) codebook_decode_segment_reference(v, r, 0, v.cols, W.data() + r * v.cols);

  std::vector<double> exact(yf.size()), mag(yf.size()), bound(yf.size());
  for (int64_t t = 0; t < n; ++t)
    for (int64_t r = 0; r < v.rows; ++r) {
      const int64_t tb = r / v.cb_rows;
      const double half_a = 0.5 * T.a[static_cast<size_t>(tb)];
      double e = 0, m = 0, bnd = 0;
      for (int64_t j = 0; j < v.cols; ++j) {
        const double w = W[r * v.cols + j], xv = xs[t * v.cols + j];
        uint16_t h;
        std::memcpy(&h, v.scales + 2 * (r * v.ngroups + j / v.group), 2);
        const double s = f16_to_f32(h);
        const double d = a.d[static_cast<size_t>(t * a.nblk + j / 32)];
        const double wq = std::fabs(w) + std::fabs(s) * half_a;  // >= |w^|
        e += w * xv;
        m += std::fabs(w * xv);
        bnd += std::fabs(s) * half_a * std::fabs(xv) + wq * 0.5 * d;
      }
      exact[t * v.rows + r] = e;
      mag[t * v.rows + r] = m;
      bound[t * v.rows + r] = bnd;
    }
  double rms = 0;
  for (double e : exact) rms += e * e;
  rms = std::sqrt(rms / static_cast<double>(exact.size()));
  Errors err;
  int bad = 0;
  for (size_t i = 0; i < yf.size(); ++i) {
    const int64_t t = static_cast<int64_t>(i) / v.rows, r = static_cast<int64_t>(i) % v.rows;
    if (!(std::fabs(yf[i] - yr[i]) <= 1e-5 * mag[i] + 1e-30) && ++bad <= 5)
      ADD_FAILURE() << what << " n=" << n << " token " << t << " row " << r << ": fast " << yf[i] << ", reference "
                    << yr[i] << " (sum |w x| = " << mag[i] << ")";
    const double dev = std::fabs(yr[i] - exact[i]);
    if (!(dev <= bound[i] + 1e-5 * mag[i]) && ++bad <= 5)
      ADD_FAILURE() << what << " n=" << n << " token " << t << " row " << r << ": reference " << yr[i] << ", exact "
                    << exact[i] << ", bound " << bound[i];
    err.max_rel_mag = std::max(err.max_rel_mag, dev / mag[i]);
    err.max_rel_rms = std::max(err.max_rel_rms, dev / rms);
    err.rms_rel += dev * dev;
  }
  err.rms_rel = std::sqrt(err.rms_rel / static_cast<double>(yf.size())) / rms;
  EXPECT_EQ(bad, 0) << what << " n=" << n;
  return err;
}

// Each kernel test runs on every SIMD path the CPU has, forced by capping the level.
class CodebookQ8Path : public ::testing::TestWithParam<SimdLevel> {
 protected:
  void SetUp() override {
    if (cpu_simd_level() < GetParam())
      GTEST_SKIP() << "this CPU lacks " << simd_level_name(GetParam()) << ": that path is not run here";
    set_simd_cap(GetParam());
  }
  void TearDown() override { set_simd_cap(std::nullopt); }
};
INSTANTIATE_TEST_SUITE_P(Simd, CodebookQ8Path, ::testing::Values(SimdLevel::Avx2, SimdLevel::Avx512Vnni),
                         [](const ::testing::TestParamInfo<SimdLevel>& i) { return std::string(simd_level_name(i.param)); });

// Groups of 1, 2, 3, 4, 8 and 10 blocks (runs of 1, 2, 4 or 8 blocks plus single blocks), a partial
// last group (640 = 6 groups of 96 + 64), token counts on both paths (fused n <= 8, tiled n > 8).
TEST_P(CodebookQ8Path, FastMatchesReferenceAndExact) {
  uint32_t seed = 1;
  for (int k : {2, 3, 4})
    for (int64_t group : {32, 64, 96, 128, 256, 320}) {
      const int64_t rows = 37, cols = 640;
      const RandomCodebook c = make_codebook(k, rows, cols, group, /*cb_rows=*/10, seed++);
      for (int64_t n : {1, 2, 3, 5, 7, 8, 9, 16, 17}) {
        const std::vector<float> x = gaussian(n * cols, seed++);
        const Errors e = check(c, x, n, "k=" + std::to_string(k) + " G=" + std::to_string(group));
        EXPECT_LT(e.rms_rel, 0.02) << "k=" << k << " G=" << group;
      }
    }
}

// Wide rows: several L1 segments on the tiled path (n > 8), rows fewer than a tile and not a
// multiple of it.
TEST_P(CodebookQ8Path, WideRows) {
  for (int k : {2, 3, 4}) {
    const RandomCodebook c = make_codebook(k, 13, 4096, 64, 5, 500 + k);
    for (int64_t n : {4, 12, 16}) check(c, gaussian(n * 4096, 600 + k), n, "4096 cols");
    const RandomCodebook c2 = make_codebook(k, 5, 2048, 128, 5, 700 + k);
    check(c2, gaussian(16 * 2048, 800 + k), 16, "5 rows");
  }
}

// quantize_act_q8: |q| <= 127, d_b = m_b D >= max_b |x| / 127, |x - q d_b| <= d_b / 2, bsum, the
// permuted copies.
TEST(CodebookQ8, QuantizeActivations) {
  const int64_t n = 3, cols = 256;
  std::vector<float> x = gaussian(n * cols, 21);
  x[40] = 1000.0f;                                           // an outlier
  std::fill(x.begin() + cols + 64, x.begin() + cols + 96, 0.0f);  // an all-zero block
  ActQ8 a;
  quantize_act_q8(x.data(), n, cols, a);
  for (int64_t t = 0; t < n; ++t)
    for (int64_t b = 0; b < cols / 32; ++b) {
      const size_t i = static_cast<size_t>(t * a.nblk + b);
      float mx = 0;
      int32_t bs = 0;
      for (int j = 0; j < 32; ++j) mx = std::max(mx, std::fabs(x[t * cols + b * 32 + j]));
      EXPECT_LE(a.m[i], 4095);
      EXPECT_FLOAT_EQ(a.d[i], static_cast<float>(a.m[i]) * a.D[static_cast<size_t>(t)]);
      EXPECT_GE(a.d[i] * 127.0f * (1 + 1e-6f), mx);
      for (int j = 0; j < 32; ++j) {
        const int q = a.q[static_cast<size_t>(t * cols + b * 32 + j)];
        EXPECT_LE(std::abs(q), 127);
        EXPECT_LE(std::fabs(x[t * cols + b * 32 + j] - q * a.d[i]), 0.5f * a.d[i] * (1 + 1e-5f) + 1e-30f);
        bs += q;
      }
      EXPECT_EQ(a.bsum[i], bs);
      EXPECT_EQ(a.m2[static_cast<size_t>(b * n + t)], a.m[i] * 0x10001u);
      for (int pk = 0; pk < 3; ++pk) {  // each layout holds the block's 32 values, permuted
        std::vector<int> got(a.perm[pk][static_cast<size_t>(b * n + t)].v, a.perm[pk][static_cast<size_t>(b * n + t)].v + 32);
        std::vector<int> want(a.q.begin() + t * cols + b * 32, a.q.begin() + t * cols + b * 32 + 32);
        std::sort(got.begin(), got.end());
        std::sort(want.begin(), want.end());
        EXPECT_EQ(got, want);
      }
    }
}

TEST_P(CodebookQ8Path, EdgeCases) {
  // One row, one block; a table with all levels equal (a = 0); an all-zero activation block.
  for (int k : {2, 3, 4}) {
    const RandomCodebook one = make_codebook(k, 1, 32, 32, 1, 100 + k);
    check(one, gaussian(3 * 32, 7), 3, "one row");
    const RandomCodebook deg = make_codebook(k, 19, 96, 32, 4, 200 + k, /*degenerate=*/true);
    check(deg, gaussian(2 * 96, 8), 2, "degenerate table", /*zero_block_token=*/1);
    const RandomCodebook deg16 = make_codebook(k, 19, 96, 32, 4, 250 + k, /*degenerate=*/true);
    check(deg16, gaussian(16 * 96, 10), 16, "degenerate table, tiled", /*zero_block_token=*/9);
  }
}

TEST(CodebookQ8, Supported) {
  const RandomCodebook c = make_codebook(3, 8, 64, 32, 8, 5);
  CodebookView v = c.v;
  EXPECT_TRUE(codebook_q8_supported(v));
  for (int k : {1, 5, 6, 8}) {
    v = c.v;
    v.k = k;
    v.row_bytes = v.cols * k / 8;
    EXPECT_FALSE(codebook_q8_supported(v)) << k;
  }
  v = c.v;
  v.group = 48;
  v.ngroups = 2;
  EXPECT_FALSE(codebook_q8_supported(v));
  v = c.v;
  v.cols = 72;
  v.row_bytes = 27;
  v.ngroups = 3;
  EXPECT_FALSE(codebook_q8_supported(v));
}

// Accuracy cost on a TinyLlama-like row shape, printed for the record: the reference's max error
// against the exact fp32 product, relative to sum |w x| and to the rms output.
TEST(CodebookQ8, AccuracyReport) {
  for (int k : {2, 3, 4}) {
    const RandomCodebook c = make_codebook(k, 64, 2048, 64, 64, 400 + k);
    const Errors e = check(c, gaussian(4 * 2048, 11), 4, "report");
    std::printf("k=%d: |y - Wx|: max / sum|w x| = %.3g, max / rms(Wx) = %.3g, rms / rms(Wx) = %.3g\n", k,
                e.max_rel_mag, e.max_rel_rms, e.rms_rel);
  }
}

}  // namespace
