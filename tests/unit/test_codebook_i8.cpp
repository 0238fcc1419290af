// The int8 codebook path (kernels/cpu/codebook_i8.h): the AMX tile kernel and the two AVX-512 VNNI
// kernels (few tokens, token tiles; each forced for every token count) against the scalar reference
// of the same integers and fp32 order (bit for bit), the reference against the exact fp32 product W x
// within the documented bound, the activation quantizer and its B-tile packing, the signed tables,
// and the codec's matmul choosing the path (same result as the kernel). Random codebook views
// (random_codebook.h): row counts that are not multiples of 32, several table blocks, k = 2 to 6 (5, 6:
// the VBMI unpack, natural column order; AMX CPUs run them with the VNNI kernels too),
// groups of 64 to 320 columns, token counts from 1 to 49 (odd numbers of 16-token tiles, partial
// tiles). Kernels the CPU cannot run are skipped with a message (the reference still runs).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "base/cpu_features.h"
#include "base/half.h"
#include "kernels/cpu/codebook_i8.h"
#include "kernels/cpu/codebook_kernels.h"
#include "kernels/cpu/codebook_q8.h"
#include "random_codebook.h"

using namespace upg;
using namespace upg::kernels;
using namespace upg::kernels::test_support;

namespace {

bool have_amx() { return cpu_simd_level() >= SimdLevel::Amx; }
bool have_vnni() { return cpu_simd_level() >= SimdLevel::Avx512Vnni; }
bool have_vbmi() { return have_vnni() && cpu_features().avx512vbmi; }

// The kernels this CPU runs: (SIMD cap, VNNI tile threshold, name).
struct KernelChoice {
  SimdLevel cap;
  int64_t tile_tokens;
  const char* name;
};
std::vector<KernelChoice> kernels_here() {
  std::vector<KernelChoice> k;
  if (have_amx()) {
    k.push_back({SimdLevel::Amx, 0, "AMX (default split: VNNI few-token kernel below it)"});
    k.push_back({SimdLevel::Amx, 1, "AMX (every token count)"});
  }
  if (have_vnni()) {
    k.push_back({SimdLevel::Avx512Vnni, 0, "VNNI (default split)"});
    k.push_back({SimdLevel::Avx512Vnni, 1, "VNNI token tiles"});
    k.push_back({SimdLevel::Avx512Vnni, int64_t{1} << 40, "VNNI few tokens"});
  }
  return k;
}

// Reference against exact within sum_j (|s_j| alpha / 2 |x_j| + |w^_j| d_j / 2) (+ 1e-5 sum |w x| for
// fp32 rounding and the rounding of x / d); each kernel this CPU runs (kernels_here) bit for bit against the
// reference. Returns rms(reference - exact) / rms(exact).
double check(const RandomCodebook& c, const std::vector<float>& x, int64_t n, const std::string& what) {
  const CodebookView& v = c.v;
  EXPECT_TRUE(codebook_i8_supported(v)) << what;
  const CodebookI8Tables T = codebook_i8_tables(v);
  EXPECT_LE(T.max_level_err, 0.5f / 127.0f + 1e-6f) << what;
  ActI8 a;
  quantize_act_i8(x.data(), n, v.cols, v.k, a);
  EXPECT_TRUE(a.finite);
  std::vector<float> yr(static_cast<size_t>(n * v.rows), NAN);
  codebook_matmul_i8_reference(v, T, a, yr.data());
  for (const KernelChoice& kc : kernels_here()) {
    set_simd_cap(kc.cap);
    std::vector<float> yf(yr.size(), NAN);
    codebook_matmul_i8(v, T, a, yf.data(), kc.tile_tokens);
    set_simd_cap(std::nullopt);
    int bad = 0;
    for (size_t i = 0; i < yf.size(); ++i)
      if (std::memcmp(&yf[i], &yr[i], 4) != 0 && ++bad <= 5)
        ADD_FAILURE() << what << " n=" << n << " token " << i / v.rows << " row " << i % v.rows << ": " << kc.name << " "
                      << yf[i] << ", reference " << yr[i];
    EXPECT_EQ(bad, 0) << what << " n=" << n << " " << kc.name;
  }
  std::vector<float> W(static_cast<size_t>(v.rows * v.cols));
  for (int64_t r = 0; r < v.rows; ++r) codebook_decode_segment_reference(v, r, 0, v.cols, W.data() + r * v.cols);
  double se = 0, sx = 0;
  int bad = 0;
  for (int64_t t = 0; t < n; ++t)
    for (int64_t r = 0; r < v.rows; ++r) {
      const double half_alpha = 0.5 * T.alpha[static_cast<size_t>(r / v.cb_rows)];
      double e = 0, m = 0, bnd = 0;
      for (int64_t j = 0; j < v.cols; ++j) {
        const double w = W[r * v.cols + j], xv = x[t * v.cols + j];
        uint16_t h;
        std::memcpy(&h, v.scales + 2 * (r * v.ngroups + j / v.group), 2);
        const double s = f16_to_f32(h);
        const double d = a.d[static_cast<size_t>((j / 64) * a.ntt * 16 + t)];
        e += w * xv;
        m += std::fabs(w * xv);
        bnd += std::fabs(s) * half_alpha * std::fabs(xv) + (std::fabs(w) + std::fabs(s) * half_alpha) * 0.5 * d;
      }
      const double dev = std::fabs(yr[t * v.rows + r] - e);
      if (!(dev <= bnd + 1e-5 * m) && ++bad <= 5)
        ADD_FAILURE() << what << " n=" << n << " token " << t << " row " << r << ": reference "
                      << yr[t * v.rows + r] << ", exact " << e << ", bound " << bnd;
      se += dev * dev;
      sx += e * e;
    }
  EXPECT_EQ(bad, 0) << what;
  return std::sqrt(se / sx);
}

TEST(CodebookI8, KernelMatchesReferenceAndExact) {
  if (!have_amx()) std::printf("this CPU has no usable AMX-INT8: the AMX kernel is not checked here\n");
  if (!have_vnni()) std::printf("this CPU has no AVX-512 VNNI: only the reference is checked here\n");
  else if (!have_vbmi()) std::printf("this CPU has no AVX-512 VBMI: k = 5, 6 check only the reference here\n");
  uint32_t seed = 1;
  for (int k : {2, 3, 4, 5, 6})
    for (int64_t group : {64, 128, 192, 320}) {
      const int64_t rows = 45, cols = 640;
      // One table per 12 rows, per row, per 7 rows: the rows of a pair (few-token kernel) with one
      // table or two.
      const int64_t cb_rows = group == 128 ? 1 : group == 192 ? 7 : 12;
      const RandomCodebook c = make_codebook(k, rows, cols, group, cb_rows, seed++);
      for (int64_t n : {1, 2, 3, 5, 8, 9, 16, 17, 25, 33, 49}) {
        const double rel = check(c, gaussian(n * cols, seed++), n, "k=" + std::to_string(k) + " G=" + std::to_string(group));
        EXPECT_LT(rel, 0.03) << "k=" << k << " G=" << group << " n=" << n;
      }
    }
}

// Wide rows (several KiB of A tiles per row tile), an exact multiple of 32 rows, one row, a table
// with all levels equal (alpha from them, v all +-127) and an all-zero table (alpha = 0).
TEST(CodebookI8, ShapesAndTables) {
  for (int k : {2, 3, 4, 5, 6}) {
    check(make_codebook(k, 64, 4096, 64, 64, 300 + k), gaussian(32 * 4096, 310 + k), 32, "4096 cols");
    check(make_codebook(k, 1, 64, 64, 1, 320 + k), gaussian(20 * 64, 330 + k), 20, "one row");
    check(make_codebook(k, 40, 128, 64, 16, 340 + k, /*degenerate=*/true), gaussian(18 * 128, 350 + k), 18,
          "equal levels");
    RandomCodebook z = make_codebook(k, 33, 128, 64, 32, 360 + k);
    std::fill(z.levels.begin(), z.levels.begin() + (1 << k), 0.0f);
    check(z, gaussian(16 * 128, 370 + k), 16, "zero table");
  }
}

// Zero activations, an all-zero chunk, outliers, and a token with NaN (finite = false).
TEST(CodebookI8, QuantizeActivations) {
  const int64_t n = 19, cols = 256;
  std::vector<float> x = gaussian(n * cols, 21);
  x[40] = 1000.0f;
  std::fill(x.begin() + cols + 64, x.begin() + cols + 128, 0.0f);
  uint8_t natural[32];
  for (int i = 0; i < 32; ++i) natural[i] = static_cast<uint8_t>(i);
  for (int k : {2, 3, 4, 5, 6}) {
    ActI8 a;
    quantize_act_i8(x.data(), n, cols, k, a);
    ASSERT_TRUE(a.finite);
    ASSERT_EQ(a.ntt, 2);
    const uint8_t* pi = k <= 4 ? codebook_q8_pi(k) : natural;
    for (int64_t t = 0; t < 32; ++t)
      for (int64_t c = 0; c < cols / 64; ++c) {
        const float d = a.d[static_cast<size_t>(c * 32 + t)];
        if (t >= n) {
          EXPECT_EQ(d, 0.0f);
          continue;
        }
        float mx = 0;
        for (int j = 0; j < 64; ++j) mx = std::max(mx, std::fabs(x[t * cols + c * 64 + j]));
        EXPECT_FLOAT_EQ(d, mx / 127.0f);
        for (int j = 0; j < 64; ++j) {
          const int q = a.q[static_cast<size_t>(t * cols + c * 64 + j)];
          EXPECT_LE(std::abs(q), 127);
          EXPECT_LE(std::fabs(x[t * cols + c * 64 + j] - q * d), 0.5f * d * (1 + 1e-5f) + 1e-30f);
        }
      }
    // qp: each token's chunks in the tiles' column order; qsum: the chunk's sum of q (0 past n).
    for (int64_t c = 0; c < cols / 64; ++c)
      for (int64_t t = 0; t < 32; ++t) {
        int32_t sum = 0;
        for (int p = 0; p < 64 && t < n; ++p) {
          const int q = a.q[static_cast<size_t>(t * cols + 64 * c + 32 * (p / 32) + pi[p % 32])];
          ASSERT_EQ(a.qp[static_cast<size_t>(t * cols + 64 * c + p)], q);
          sum += q;
        }
        ASSERT_EQ(a.qsum[static_cast<size_t>(c * 32 + t)], sum) << "chunk " << c << " token " << t;
      }
    // B tiles: byte (kk, t, i) = q[16 tt + t][64 c + 32 (p / 32) + pi[p % 32]] with p = 4 kk + i, 0 past n.
    for (int64_t c = 0; c < cols / 64; ++c)
      for (int64_t tt = 0; tt < 2; ++tt)
        for (int kk = 0; kk < 16; ++kk)
          for (int t = 0; t < 16; ++t)
            for (int i = 0; i < 4; ++i) {
              const int p = 4 * kk + i;
              const int64_t tok = 16 * tt + t;
              const int want = tok < n ? a.q[static_cast<size_t>(tok * cols + 64 * c + 32 * (p / 32) + pi[p % 32])] : 0;
              ASSERT_EQ(a.tiles[static_cast<size_t>((c * 2 + tt) * 1024 + 64 * kk + 4 * t + i)], want);
            }
  }
  x[3 * cols + 7] = NAN;
  ActI8 a;
  quantize_act_i8(x.data(), n, cols, 3, a);
  EXPECT_FALSE(a.finite);
  for (int64_t j = 0; j < cols; ++j) EXPECT_EQ(a.q[static_cast<size_t>(3 * cols + j)], 0);
}

TEST(CodebookI8, Supported) {
  const RandomCodebook c = make_codebook(3, 8, 128, 64, 8, 5);
  EXPECT_TRUE(codebook_i8_supported(c.v));
  CodebookView v = c.v;
  v.group = 32;
  v.ngroups = 4;
  EXPECT_FALSE(codebook_i8_supported(v));
  for (int k : {1, 2, 4, 5, 6, 7, 8}) {
    v = c.v;
    v.k = k;
    v.row_bytes = v.cols * k / 8;
    EXPECT_EQ(codebook_i8_supported(v), k >= 2 && k <= 6) << k;
    v.row_bytes += 1;  // rows not packed
    EXPECT_FALSE(codebook_i8_supported(v)) << k;
  }
  // Kernels: VNNI (or AMX) for k <= 4, and VBMI too for k = 5, 6; none below VNNI.
  for (int k = 2; k <= 6; ++k) EXPECT_EQ(codebook_i8_has_kernel(k), k <= 4 ? have_vnni() : have_vbmi()) << k;
  set_simd_cap(SimdLevel::Avx512);
  for (int k = 2; k <= 6; ++k) EXPECT_FALSE(codebook_i8_has_kernel(k)) << k;
  set_simd_cap(std::nullopt);
  const RandomCodebook c96 = make_codebook(2, 8, 96, 32, 8, 6);
  EXPECT_FALSE(codebook_i8_supported(c96.v));
}

// Below AVX-512 VNNI (the level capped) codebook_matmul_i8 runs the reference: same bits.
TEST(CodebookI8, CappedLevelRunsTheReference) {
  const RandomCodebook c = make_codebook(4, 50, 256, 128, 25, 77);
  const CodebookI8Tables T = codebook_i8_tables(c.v);
  ActI8 a;
  const std::vector<float> x = gaussian(20 * 256, 78);
  quantize_act_i8(x.data(), 20, 256, 4, a);
  std::vector<float> y1(20 * 50), y2(20 * 50);
  set_simd_cap(SimdLevel::Avx512);
  codebook_matmul_i8(c.v, T, a, y1.data());
  set_simd_cap(std::nullopt);
  codebook_matmul_i8_reference(c.v, T, a, y2.data());
  EXPECT_EQ(0, std::memcmp(y1.data(), y2.data(), y1.size() * 4));
}

// Accuracy against the exact product on a TinyLlama-like row shape, printed for the record.
TEST(CodebookI8, AccuracyReport) {
  for (int k : {2, 3, 4, 5, 6}) {
    const RandomCodebook c = make_codebook(k, 64, 2048, 64, 64, 400 + k);
    const double rel = check(c, gaussian(16 * 2048, 11), 16, "report");
    std::printf("k=%d: rms(y - Wx) / rms(Wx) = %.3g\n", k, rel);
  }
}

}  // namespace
