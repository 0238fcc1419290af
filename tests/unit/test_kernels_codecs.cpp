// The fast CPU kernels of every codec (kernels/cpu/*_kernels.h, reached through
// WeightMatrix::matmul / decode_rows_bf16) against the plain references: decode_rows followed by
// a double-precision product, and f32_to_bf16 of decode_rows. Fresh random inputs, odd shapes,
// every code width, outputs poisoned (NaN / 0xffff) so unwritten elements fail.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "base/cpu_features.h"
#include "base/half.h"
#include "codec_test_util.h"
#include "codecs/codebook/codebook_codec.h"
#include "codecs/codec_registry.h"
#include "codecs/dense/dense_matrix.h"
#include "kernels/cpu/tile_gemm.h"

using namespace upg;
using namespace upg::test;

namespace {

// |y - ref| <= 1e-5 * sum |w x| (+ tiny): fp32 rounding of a length-cols dot product, whatever
// the summation order; y poisoned with NaN first.
void expect_matmul_ok(const WeightMatrix& m, int64_t n, uint32_t seed, const std::string& what) {
  const std::vector<float> W = decode_all(m);
  const std::vector<float> x = gaussian_matrix(n, m.cols(), seed, 1.0f);
  std::vector<float> y(n * m.rows(), NAN);
  m.matmul(x.data(), n, y.data());
  int bad = 0;
  for (int64_t t = 0; t < n; ++t)
    for (int64_t r = 0; r < m.rows(); ++r) {
      double ref = 0, mag = 0;
      for (int64_t c = 0; c < m.cols(); ++c) {
        const double p = static_cast<double>(W[r * m.cols() + c]) * x[t * m.cols() + c];
        ref += p;
        mag += std::fabs(p);
      }
      const float got = y[t * m.rows() + r];
      if (!(std::fabs(got - ref) <= 1e-5 * mag + 1e-30) && ++bad <= 5)
        ADD_FAILURE() << what << " n=" << n << " token " << t << " row " << r << ": got " << got << ", reference "
                      << ref << " (sum |w x| = " << mag << ")";
    }
  EXPECT_EQ(bad, 0) << what << " n=" << n;
}

// decode_rows_bf16 over [r0, r1) == f32_to_bf16(decode_rows) bit for bit; untouched output fails.
void expect_bf16_ok(const WeightMatrix& m, int64_t r0, int64_t r1, const std::string& what) {
  std::vector<float> f((r1 - r0) * m.cols());
  m.decode_rows(r0, r1, f.data());
  std::vector<uint16_t> b(f.size() + 1, 0xffff);  // one guard element past the end
  m.decode_rows_bf16(r0, r1, b.data());
  int bad = 0;
  for (size_t i = 0; i < f.size(); ++i)
    if (b[i] != f32_to_bf16(f[i]) && ++bad <= 5)
      ADD_FAILURE() << what << " rows [" << r0 << ", " << r1 << ") element " << i << ": got 0x" << std::hex << b[i]
                    << ", expected 0x" << f32_to_bf16(f[i]) << std::dec;
  EXPECT_EQ(bad, 0) << what;
  EXPECT_EQ(b.back(), 0xffff) << what << ": wrote past the end";
}

void check_all(const WeightMatrix& m, uint32_t seed, const std::string& what) {
  for (int64_t n : {1, 3, 17}) expect_matmul_ok(m, n, seed + static_cast<uint32_t>(n), what);
  expect_bf16_ok(m, 0, m.rows(), what);
  expect_bf16_ok(m, m.rows() / 3, m.rows() - 1, what);
}

struct Opened {
  EncodedTensor t;
  EncodedArrays views;
  std::unique_ptr<WeightMatrix> m;
};

std::unique_ptr<Opened> open_encoded(const std::string& codec, EncodedTensor t, int64_t rows, int64_t cols) {
  auto o = std::make_unique<Opened>();
  o->t = std::move(t);
  o->views = o->t.views();
  o->m = make_codec(codec)->open(o->views, rows, cols, o->t.params);
  return o;
}

// A codebook tensor with uniformly random codes (every code value appears), random scales of
// both signs and random ascending levels: exercises every lookup path without an encoder run.
std::unique_ptr<Opened> random_codebook(int k, int64_t group, int64_t cb_rows, int64_t rows, int64_t cols,
                                        uint32_t seed) {
  const CodecParams p = {{"bits", k}, {"group", group}, {"codebook_rows", cb_rows}, {"levels", "gaussian"}};
  const CodebookLayout l = read_codebook_layout(p, rows, cols);
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> code(0, (1 << k) - 1);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<uint8_t> codes(rows * cols);
  for (auto& c : codes) c = static_cast<uint8_t>(code(rng));
  std::vector<float> scales(rows * l.ngroups), levels(l.nblocks << k);
  for (auto& s : scales) s = 0.01f * nd(rng);
  for (int64_t b = 0; b < l.nblocks; ++b) {
    float v = -1.0f;
    for (int i = 0; i < (1 << k); ++i) levels[(b << k) + i] = v += 0.05f + std::fabs(nd(rng)) / (1 << k);
  }
  return open_encoded("codebook", codebook_from_codes(p, rows, cols, codes.data(), scales.data(), levels.data()),
                      rows, cols);
}

}  // namespace

TEST(KernelsTileGemm, MatchesReference) {
  std::mt19937 rng(7);
  for (int64_t n : {1, 2, 3, 5, 17})
    for (int64_t nr : {1, 3, 4, 7, 16})
      for (int64_t kc : {1, 7, 8, 64, 77}) {
        const int64_t ldx = kc + 3, ldt = kc + 5, ldy = nr + 2;
        std::vector<float> x = gaussian_matrix(n, ldx, static_cast<uint32_t>(rng()), 1.0f);
        std::vector<float> t = gaussian_matrix(nr, ldt, static_cast<uint32_t>(rng()), 1.0f);
        std::vector<float> y0 = gaussian_matrix(n, ldy, static_cast<uint32_t>(rng()), 1.0f), y1 = y0;
        kernels::gemm_tile_nt(x.data(), ldx, n, t.data(), ldt, nr, kc, y0.data(), ldy);
        kernels::gemm_tile_nt_reference(x.data(), ldx, n, t.data(), ldt, nr, kc, y1.data(), ldy);
        for (int64_t m = 0; m < n; ++m)
          for (int64_t r = 0; r < ldy; ++r) {
            double mag = std::fabs(y1[m * ldy + r]);
            if (r < nr)
              for (int64_t k = 0; k < kc; ++k) mag += std::fabs(x[m * ldx + k] * t[r * ldt + k]);
            ASSERT_NEAR(y0[m * ldy + r], y1[m * ldy + r], 1e-5 * mag + 1e-30)
                << "n=" << n << " nr=" << nr << " kc=" << kc << " m=" << m << " r=" << r;
          }
      }
}

TEST(KernelsBf16, VectorConversionMatchesScalar) {
  std::vector<float> v = gaussian_matrix(1, 1000, 3, 10.0f);
  const uint32_t specials[] = {0x00000000u, 0x80000000u, 0x7f800000u, 0xff800000u, 0x7fc00000u, 0x7f800001u,
                               0xffffffffu, 0x3f808000u, 0x3f818000u, 0x7f7fffffu, 0x00000001u, 0x3f807fffu};
  for (size_t i = 0; i < std::size(specials); ++i) std::memcpy(&v[3 * i + 1], &specials[i], 4);
  std::vector<uint16_t> out(v.size() + 1, 0xabcd);
  kernels::f32_to_bf16_n(v.data(), out.data(), static_cast<int64_t>(v.size()));
  for (size_t i = 0; i < v.size(); ++i) ASSERT_EQ(out[i], f32_to_bf16(v[i])) << "element " << i;
  EXPECT_EQ(out.back(), 0xabcd);
}

// Every codebook shape under one SIMD level (capped to it for the duration).
void check_codebook_shapes(SimdLevel level) {
  set_simd_cap(level);
  set_int8_activations(false);  // the fp32 paths; the int8 path has its own test below
  uint32_t seed = 100;
  for (int k = 1; k <= 8; ++k)
    for (auto [group, cb_rows, rows, cols] : std::vector<std::tuple<int64_t, int64_t, int64_t, int64_t>>{
             {64, 0, 37, 203}, {8, 0, 19, 61}, {24, 5, 23, 130}, {128, 0, 9, 512}, {16, 2, 6, 9}, {40, 0, 33, 321}}) {
      auto o = random_codebook(k, group, cb_rows, rows, cols, ++seed);
      check_all(*o->m, seed, std::string(simd_level_name(level)) + " codebook k=" + std::to_string(k) + " G=" +
                                 std::to_string(group) + " CB=" + std::to_string(cb_rows) + " " +
                                 std::to_string(rows) + "x" + std::to_string(cols));
    }
  set_simd_cap(std::nullopt);
  set_int8_activations(true);
}

TEST(KernelsCodebook, AllBitsGroupsShapesAvx2) { check_codebook_shapes(SimdLevel::Avx2); }

// The AVX-512 variants (codebook_kernels_avx512.cpp) run only where the CPU has AVX-512; this
// build machine may not (then the test says so and skips). docs/PERFORMANCE.md records the run on
// an AVX-512 host.
TEST(KernelsCodebook, AllBitsGroupsShapesAvx512) {
  if (cpu_simd_level() < SimdLevel::Avx512) GTEST_SKIP() << "this CPU has no AVX-512 F/BW/VL: the AVX-512 path is not run here";
  check_codebook_shapes(SimdLevel::Avx512);
}

// The int8-activation path (kernels/cpu/codebook_q8.h) as WeightMatrix::matmul takes it for a
// few tokens: within the error bound of its contract, |y - W x| <= sum_j (|s_j| (hi - lo) / 254
// |x_j| + |w_j| d_j / 2), d_j = the block's activation step (<= max_block|x| / 127 + max|x| /
// (127 * 4095)), against a double-precision product of the exact weights; and really taken (not
// bit-equal to the fp32 path everywhere).
TEST(KernelsCodebook, Int8ActivationPathWithinItsErrorBound) {
  uint32_t seed = 900;
  for (int k : {2, 3, 4})
    for (auto [group, cb_rows, rows, cols] : std::vector<std::tuple<int64_t, int64_t, int64_t, int64_t>>{
             {32, 0, 37, 256}, {64, 7, 29, 320}, {128, 0, 13, 512}, {256, 0, 9, 768}}) {
      const CodecParams p = {{"bits", k}, {"group", group}, {"codebook_rows", cb_rows}, {"levels", "gaussian"}};
      const CodebookLayout l = read_codebook_layout(p, rows, cols);
      std::mt19937 rng(++seed);
      std::uniform_int_distribution<int> code(0, (1 << k) - 1);
      std::normal_distribution<float> nd(0.0f, 1.0f);
      std::vector<uint8_t> codes(rows * cols);
      for (auto& c : codes) c = static_cast<uint8_t>(code(rng));
      std::vector<float> scales(rows * l.ngroups), levels(l.nblocks << k);
      for (auto& sc : scales) sc = f16_to_f32(f32_to_f16(0.01f * nd(rng)));
      for (int64_t b = 0; b < l.nblocks; ++b) {
        float v = -1.0f;
        for (int i = 0; i < (1 << k); ++i) levels[(b << k) + i] = v += 0.05f + std::fabs(nd(rng)) / (1 << k);
      }
      auto o = open_encoded("codebook", codebook_from_codes(p, rows, cols, codes.data(), scales.data(), levels.data()),
                            rows, cols);
      const std::vector<float> W = decode_all(*o->m);
      const int64_t cb = cb_rows == 0 ? rows : cb_rows;
      for (int64_t n : {1, 3, 16}) {
        const std::vector<float> x = gaussian_matrix(n, cols, seed * 7 + static_cast<uint32_t>(n), 1.0f);
        std::vector<float> y(n * rows, NAN), yf(n * rows);
        o->m->matmul(x.data(), n, y.data());
        set_int8_activations(false);
        o->m->matmul(x.data(), n, yf.data());
        set_int8_activations(true);
        int bad = 0, differs = 0;
        for (int64_t t = 0; t < n; ++t) {
          const float* xt = x.data() + t * cols;
          float tokmax = 0;
          for (int64_t c = 0; c < cols; ++c) tokmax = std::max(tokmax, std::fabs(xt[c]));
          for (int64_t r = 0; r < rows; ++r) {
            const float* L = levels.data() + (r / cb << k);
            const double range = L[(1 << k) - 1] - L[0];
            double ref = 0, bound = 0, mag = 0;
            for (int64_t c = 0; c < cols; ++c) {
              float bmax = 0;
              for (int64_t j = c / 32 * 32; j < c / 32 * 32 + 32; ++j) bmax = std::max(bmax, std::fabs(xt[j]));
              const double w = W[r * cols + c];
              ref += w * xt[c];
              mag += std::fabs(w * xt[c]);
              bound += std::fabs(scales[r * l.ngroups + c / group]) * range / 254 * std::fabs(xt[c]) +
                       std::fabs(w) * (bmax / 127.0 + tokmax / (127.0 * 4095)) / 2;
            }
            const float got = y[t * rows + r];
            if (!(std::fabs(got - ref) <= bound * 1.001 + 1e-5 * mag) && ++bad <= 3)
              ADD_FAILURE() << "k=" << k << " G=" << group << " n=" << n << " token " << t << " row " << r << ": got "
                            << got << ", exact " << ref << ", bound " << bound;
            differs += got != yf[t * rows + r];
          }
        }
        EXPECT_EQ(bad, 0);
        EXPECT_GT(differs, 0) << "k=" << k << " G=" << group << " n=" << n << ": the int8 path was not taken";
      }
      // A NaN or Inf activation must not be quantized into a plausible number: it propagates.
      for (float poison : {NAN, INFINITY}) {
        std::vector<float> x = gaussian_matrix(2, cols, seed, 1.0f), y(2 * rows, 0.0f);
        x[cols + 5] = poison;
        o->m->matmul(x.data(), 2, y.data());
        bool token1_nonfinite = false;
        for (int64_t r = 0; r < rows; ++r) token1_nonfinite |= !std::isfinite(y[rows + r]);
        EXPECT_TRUE(token1_nonfinite) << "k=" << k << " G=" << group << ": a " << poison << " input gave finite outputs";
      }
    }
}

TEST(KernelsCodebook, EncodedThroughCodec) {
  set_int8_activations(false);  // exact fp32 reference below; the int8 path is tested above
  const int64_t rows = 45, cols = 320;
  const std::vector<float> W = gaussian_matrix(rows, cols, 5);
  for (int k : {2, 3, 4, 5, 6}) {
    EncodedTensor t = make_codec("codebook")->encode(W.data(), rows, cols, {{"bits", k}, {"group", 32}, {"lloyd_iters", 1}});
    auto o = open_encoded("codebook", std::move(t), rows, cols);
    check_all(*o->m, 200 + k, "codebook encoded k=" + std::to_string(k));
  }
  set_int8_activations(true);
}

TEST(KernelsInt8, GroupsScaleTypesShapes) {
  uint32_t seed = 300;
  for (std::string sd : {"f16", "f32"})
    for (auto [group, rows, cols] : std::vector<std::tuple<int64_t, int64_t, int64_t>>{
             {128, 37, 203}, {0, 19, 61}, {1, 5, 13}, {7, 23, 130}, {64, 33, 512}, {16, 3, 16}}) {
      const std::vector<float> W = heavy_tailed_matrix(rows, cols, ++seed);
      EncodedTensor t = make_codec("int8")->encode(W.data(), rows, cols, {{"group", group}, {"scale_dtype", sd}});
      auto o = open_encoded("int8", std::move(t), rows, cols);
      check_all(*o->m, seed, "int8 G=" + std::to_string(group) + " " + sd + " " + std::to_string(rows) + "x" +
                                 std::to_string(cols));
    }
}

TEST(KernelsMdcsr, DensitiesValueModesAndEscapes) {
  uint32_t seed = 400;
  for (std::string mode : {"int8", "levels"})
    for (double keep : {0.0, 0.003, 0.1, 0.5, 1.0})
      for (auto [rows, cols] : std::vector<std::pair<int64_t, int64_t>>{{37, 203}, {11, 1500}}) {
        const std::vector<float> W = heavy_tailed_matrix(rows, cols, ++seed);
        CodecParams p = {{"keep_fraction", keep}, {"values", mode}};
        if (mode == "levels") p["num_levels"] = 64;
        auto o = open_encoded("mdcsr", make_codec("mdcsr")->encode(W.data(), rows, cols, p), rows, cols);
        check_all(*o->m, seed, "mdcsr " + mode + " keep=" + std::to_string(keep) + " " + std::to_string(rows) +
                                   "x" + std::to_string(cols));
      }
}

// W (rows x cols) stored as dt in `bytes`, one byte past an aligned start, as a memory-mapped
// tensor may be; returns the start.
static const uint8_t* store_misaligned(const std::vector<float>& W, TensorDType dt, std::vector<uint8_t>& bytes) {
  bytes.assign(W.size() * 4 + 1, 0);
  uint8_t* p = bytes.data() + 1;
  for (size_t i = 0; i < W.size(); ++i) {
    if (dt == TensorDType::F32) std::memcpy(p + 4 * i, &W[i], 4);
    else {
      const uint16_t h = dt == TensorDType::F16 ? f32_to_f16(W[i]) : f32_to_bf16(W[i]);
      std::memcpy(p + 2 * i, &h, 2);
    }
  }
  return p;
}

TEST(KernelsDense, Bf16F16F32) {
  const int64_t rows = 29, cols = 133;
  const std::vector<float> W = gaussian_matrix(rows, cols, 9, 1.0f);
  for (TensorDType dt : {TensorDType::F32, TensorDType::F16, TensorDType::BF16}) {
    std::vector<uint8_t> bytes;
    DenseMatrix m(store_misaligned(W, dt, bytes), dt, rows, cols);
    check_all(m, 500, "dense " + m.codec());
  }
}

// A token's product does not depend on the other tokens of the call (codec_test_util.h), for the
// plain bf16 / f16 / f32 matrices: 37 rows (partial 64-row and 4-row blocks), 600 columns (a partial
// 256-column tile, a column tail), stored one byte past an aligned start.
TEST(KernelsDense, ProductOfATokenDoesNotDependOnTheOthers) {
  const int64_t rows = 37, cols = 600;
  const std::vector<float> W = gaussian_matrix(rows, cols, 19, 1.0f);
  for (TensorDType dt : {TensorDType::F32, TensorDType::F16, TensorDType::BF16}) {
    std::vector<uint8_t> bytes;
    DenseMatrix m(store_misaligned(W, dt, bytes), dt, rows, cols);
    expect_product_independent_of_batch(m, 20, "dense " + m.codec());
  }
}
