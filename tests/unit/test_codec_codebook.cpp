#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>

#include "base/cpu_features.h"
#include "base/error.h"
#include "codec_test_util.h"
#include "codecs/codebook/codebook_codec.h"
#include "codecs/codebook/levels.h"
#include "codecs/codec_registry.h"
#include "codecs/codec_util.h"

using namespace upg;
using namespace upg::test;

TEST(CodecLevels, FirstPrimes) {
  const auto& p = first_primes();
  ASSERT_EQ(p.size(), 10000u);
  EXPECT_EQ(p[0], 2u);
  EXPECT_EQ(p[9], 29u);
  EXPECT_EQ(p[999], 7919u);
  EXPECT_EQ(p[9999], 104729u);
  for (size_t i = 0; i < 200; ++i)  // trial division spot check
    for (uint32_t d = 2; d * d <= p[i]; ++d) ASSERT_NE(p[i] % d, 0u) << p[i];
}

TEST(CodecLevels, PrimeTable) {
  // k = 3, offset 0: magnitudes 2, 3, 5, 7 normalised by 7, both signs, ascending.
  std::vector<float> L = prime_levels(3, 0);
  std::vector<float> expected = {-1.0f, -5 / 7.0f, -3 / 7.0f, -2 / 7.0f, 2 / 7.0f, 3 / 7.0f, 5 / 7.0f, 1.0f};
  ASSERT_EQ(L.size(), expected.size());
  for (size_t i = 0; i < L.size(); ++i) EXPECT_FLOAT_EQ(L[i], expected[i]);
  for (int c = 0; c < 8; ++c) {
    PrimeCode pc = prime_code(3, 0, c);
    EXPECT_FLOAT_EQ(L[c], pc.sign * static_cast<float>(first_primes()[pc.prime_idx]) / 7.0f);
  }
  std::vector<float> L4 = prime_levels(4, 10);  // magnitudes p[10..17] = 31..61
  EXPECT_FLOAT_EQ(L4[8], 31.0f / 61.0f);
  EXPECT_THROW(prime_levels(4, 9995), Error);
}

TEST(CodecLevels, GaussianLloydMax) {
  // Max (1960): 4-level optimum for N(0,1) is +-0.4528, +-1.5104.
  std::vector<float> L = gaussian_levels(2);
  EXPECT_NEAR(L[2], 0.4528 / 1.5104, 1e-3);
  EXPECT_FLOAT_EQ(L[3], 1.0f);
  EXPECT_FLOAT_EQ(L[0], -1.0f);
  // 8 levels: +-0.2451, 0.7560, 1.3440, 2.1520.
  std::vector<float> L3 = gaussian_levels(3);
  EXPECT_NEAR(L3[5], 0.7560 / 2.1520, 1e-3);
}

TEST(CodecLevels, WeightedKmeans) {
  std::vector<float> v = {0.0f, 0.1f, 0.2f, 5.0f, 5.2f, 10.0f};
  std::vector<float> w = {1, 1, 2, 1, 3, 1};
  std::vector<float> L = kmeans_1d(v.data(), w.data(), v.size(), {0.0f, 4.0f, 9.0f}, 50);
  EXPECT_NEAR(L[0], (0.0 + 0.1 + 0.4) / 4, 1e-6);
  EXPECT_NEAR(L[1], (5.0 + 15.6) / 4, 1e-6);
  EXPECT_NEAR(L[2], 10.0, 1e-6);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(nearest_level(L.data(), 3, L[i]), i);
}

TEST(CodecCodebook, ExhaustiveCodesAndBitPacking) {
  // For every k, a hand-packed row holding every code 0 .. 2^k - 1 (twice, + a partial group)
  // decodes to scale * codebook[code] in both the reference and the fast path.
  for (int k = 1; k <= 8; ++k) {
    const int64_t nl = 1 << k, rows = 3, cols = 2 * nl + 8;
    const int64_t G = 8, ng = (cols + G - 1) / G, rb = (cols * k + 7) / 8;
    Array q = make_array(DType::U8, {rows, rb}), s = make_array(DType::F16, {rows, ng});
    Array cb = make_array(DType::F32, {1, nl});
    for (int64_t i = 0; i < nl; ++i) store_le<float>(cb.bytes.data(), i, 0.1f * i * i - 3.0f);
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t g = 0; g < ng; ++g) store_le<uint16_t>(s.bytes.data(), r * ng + g, f32_to_f16(0.5f + r + 0.25f * g));
      for (int64_t j = 0; j < cols; ++j) {
        const uint32_t code = static_cast<uint32_t>((j + r) % nl);
        for (int t = 0; t < k; ++t) {
          const int64_t bit = j * k + t;
          q.bytes[r * rb + bit / 8] |= static_cast<uint8_t>(((code >> t) & 1) << (bit % 8));
        }
      }
    }
    EncodedTensor t;
    t.arrays = {{"qweight", q}, {"scales", s}, {"codebook", cb}};
    auto views = t.views();
    auto m = make_codec("codebook")->open(views, rows, cols, {{"bits", k}, {"group", G}});
    auto D = decode_all(*m);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t j = 0; j < cols; ++j) {
        const int64_t code = (j + r) % nl;
        const float want = f16_to_f32(f32_to_f16(0.5f + r + 0.25f * (j / G))) * (0.1f * code * code - 3.0f);
        ASSERT_EQ(D[r * cols + j], want) << "k=" << k << " r=" << r << " j=" << j;
      }
    expect_matmul_matches_reference(*m, 100 + k);
  }
}

// Relative Frobenius error of a Gaussian 64 x 512 matrix per (bits, levels), kept inside a band.
// Band edges: measured values +-~15% (a regression either way is worth a look).
struct Band {
  int bits;
  const char* levels;
  double lo, hi;
};

TEST(CodecCodebook, RoundTripErrorBands) {
  auto codec = make_codec("codebook");
  const int64_t rows = 64, cols = 512;
  auto W = gaussian_matrix(rows, cols, 77);
  const Band bands[] = {
      {2, "fitted", 0.275, 0.372}, {3, "fitted", 0.141, 0.190}, {4, "fitted", 0.068, 0.092},
      {2, "gaussian", 0.282, 0.382}, {3, "gaussian", 0.145, 0.196}, {4, "gaussian", 0.070, 0.095},
      {2, "prime", 0.397, 0.538}, {3, "prime", 0.209, 0.283}, {4, "prime", 0.094, 0.127},
  };
  for (const Band& b : bands) {
    EncodedTensor t = codec->encode(W.data(), rows, cols, {{"bits", b.bits}, {"group", 64}, {"levels", b.levels}});
    auto views = t.views();
    auto m = codec->open(views, rows, cols, t.params);
    const double e = rel_error(W, decode_all(*m), cols);
    std::printf("bits %d %-8s rel error %.4f  bpw %.4f\n", b.bits, b.levels, e, t.bits_per_weight(rows, cols));
    EXPECT_GE(e, b.lo) << b.bits << " " << b.levels;
    EXPECT_LE(e, b.hi) << b.bits << " " << b.levels;
    expect_matmul_matches_reference(*m, 31 + b.bits);
  }
}

TEST(CodecCodebook, EveryValueIsScaleTimesALevel) {
  auto codec = make_codec("codebook");
  const int64_t rows = 10, cols = 128;
  auto W = gaussian_matrix(rows, cols, 8);
  EncodedTensor t = codec->encode(W.data(), rows, cols, {{"bits", 3}, {"group", 32}, {"codebook_rows", 4}});
  ASSERT_EQ(t.arrays.at("codebook").shape, (std::vector<int64_t>{3, 8}));
  auto views = t.views();
  auto D = decode_all(*codec->open(views, rows, cols, t.params));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < cols; ++j) {
      const float s = load_f16(t.arrays.at("scales").bytes.data(), r * 4 + j / 32);
      bool found = false;
      for (int i = 0; i < 8; ++i)
        found |= D[r * cols + j] == s * load_le<float>(t.arrays.at("codebook").bytes.data(), (r / 4) * 8 + i);
      ASSERT_TRUE(found) << r << " " << j;
    }
}

TEST(CodecCodebook, FittedBeatsFixedAndImportanceHelps) {
  auto codec = make_codec("codebook");
  const int64_t rows = 64, cols = 256;
  auto W = heavy_tailed_matrix(rows, cols, 15);
  auto h = random_importance(cols, 16);
  auto err = [&](const CodecParams& p, const float* imp) {
    EncodedTensor t = codec->encode(W.data(), rows, cols, p, imp);
    auto views = t.views();
    return rel_error(W, decode_all(*codec->open(views, rows, cols, t.params)), cols, h.data());
  };
  for (int bits : {2, 3, 4}) {
    const double fitted = err({{"bits", bits}, {"levels", "fitted"}}, h.data());
    const double gauss = err({{"bits", bits}, {"levels", "gaussian"}}, h.data());
    const double plain = err({{"bits", bits}, {"levels", "fitted"}}, nullptr);
    EXPECT_LT(fitted, gauss * 1.01) << bits;
    EXPECT_LT(fitted, plain) << bits;
  }
}

// A token's product does not depend on the other tokens of the call, bit for bit, at every SIMD level
// this CPU has: each int8-activation path quantizes a token alone and sums in a fixed order, and one
// path serves every token count (on AMX machines the tile path, on the others the int8 blocks of
// codebook_q8.h), so a sequence's logits do not depend on the batch it came in (a server's load).
TEST(CodecCodebook, ProductOfATokenDoesNotDependOnTheOthers) {
  auto codec = make_codec("codebook");
  const int64_t rows = 48, cols = 256, ntok = 40;
  std::mt19937 rng(21);
  std::normal_distribution<float> nd(0.f, 1.f);
  std::vector<float> x(static_cast<size_t>(ntok * cols));
  for (int64_t t = 0; t < ntok; ++t)
    for (int64_t j = 0; j < cols; ++j) x[t * cols + j] = nd(rng) * (0.1f + static_cast<float>(t % 5));
  for (int bits : {2, 3, 4}) {
    auto W = gaussian_matrix(rows, cols, 30 + bits);
    EncodedTensor t = codec->encode(W.data(), rows, cols, {{"bits", bits}, {"group", 64}});
    auto views = t.views();
    auto m = codec->open(views, rows, cols, t.params);
    for (int lvl = static_cast<int>(cpu_simd_level()); lvl >= 0; --lvl) {
      set_simd_cap(static_cast<SimdLevel>(lvl));
      std::vector<float> all(static_cast<size_t>(ntok * rows)), part(all.size());
      m->matmul(x.data(), ntok, all.data());
      for (int64_t n : {1, 2, 7, 15, 16, 17, 33}) {
        for (int64_t t0 = 0; t0 + n <= ntok; t0 += std::max<int64_t>(n, 11)) {
          m->matmul(x.data() + t0 * cols, n, part.data());
          ASSERT_EQ(0, std::memcmp(part.data(), all.data() + t0 * rows, static_cast<size_t>(n * rows) * sizeof(float)))
              << bits << " bits, " << simd_level_name(static_cast<SimdLevel>(lvl)) << ": tokens " << t0 << " .. "
              << t0 + n - 1 << " alone differ from the same tokens in a call of " << ntok;
        }
      }
    }
    set_simd_cap(std::nullopt);
  }
}

// The fp32-activation paths (UPG_INT8_ACTIVATIONS=0, and k >= 5 without AMX): a token's product
// does not depend on the other tokens of the call either (codec_test_util.h): the one-token kernel
// (AVX2, or AVX-512 for k <= 6 and groups of 16s) sums each row in the tiled path's order. 37 rows
// (partial row steps and tiles); 640 columns (two column tiles), 600 (a last step of 8 after the
// AVX-512 steps of 16), 634 (a partial last chunk); groups of 64 and of 40 (no AVX-512 path).
TEST(CodecCodebook, Fp32ProductOfATokenDoesNotDependOnTheOthers) {
  struct Fp32Only {
    Fp32Only() { set_int8_activations(false); }
    ~Fp32Only() { set_int8_activations(true); }
  } fp32_only;
  auto codec = make_codec("codebook");
  const int64_t rows = 37;
  for (int64_t cols : {640, 600, 634})
    for (int64_t group : {64, 40})
      for (int bits : {2, 3, 4, 5, 6, 8}) {
        auto W = gaussian_matrix(rows, cols, 40 + bits);
        EncodedTensor t = codec->encode(W.data(), rows, cols, {{"bits", bits}, {"group", group}, {"lloyd_iters", 1}});
        auto views = t.views();
        auto m = codec->open(views, rows, cols, t.params);
        expect_product_independent_of_batch(*m, 50 + bits,
                                            "codebook fp32 " + std::to_string(bits) + " bits, group " +
                                                std::to_string(group) + ", " + std::to_string(cols) + " columns");
      }
}

TEST(CodecCodebook, BitsPerWeight) {
  auto codec = make_codec("codebook");
  for (int bits : {2, 3, 4, 5, 6}) {
    const int64_t rows = 32, cols = 320;  // 320 = 2 groups of 128 + a partial one of 64
    auto W = gaussian_matrix(rows, cols, bits);
    EncodedTensor t = codec->encode(W.data(), rows, cols, {{"bits", bits}, {"group", 128}});
    const double expected = bits + 16.0 * 3 / cols + 32.0 * (1 << bits) / (rows * cols);
    EXPECT_NEAR(t.bits_per_weight(rows, cols), expected, 1e-12);
    auto views = t.views();
    EXPECT_EQ(codec->open(views, rows, cols, t.params)->stored_bytes(), t.total_bytes());
  }
}

TEST(CodecCodebook, BadArraysThrow) {
  auto codec = make_codec("codebook");
  const int64_t rows = 8, cols = 96;
  auto W = gaussian_matrix(rows, cols, 4);
  EncodedTensor t = codec->encode(W.data(), rows, cols, {{"bits", 3}, {"group", 32}});
  auto expect_error = [&](EncodedArrays a, const CodecParams& p, const std::string& needle) {
    try {
      codec->open(a, rows, cols, p);
      FAIL() << "expected an Error mentioning " << needle;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  auto a = t.views();
  a["qweight"].nbytes -= 1;
  expect_error(a, t.params, "qweight");
  a = t.views();
  a.erase("codebook");
  expect_error(a, t.params, "codebook");
  CodecParams p = t.params;
  p["bits"] = 4;  // arrays were written for 3 bits
  expect_error(t.views(), p, "qweight");
  p = t.params;
  p["group"] = 12;
  expect_error(t.views(), p, "group");
  p = t.params;
  p["bits"] = 9;
  expect_error(t.views(), p, "bits");
  EncodedTensor bad = t;
  store_le<float>(bad.arrays.at("codebook").bytes.data(), 2, NAN);
  expect_error(bad.views(), t.params, "codebook");
  a = t.views();
  a["scales"].dtype = DType::F32;
  a["scales"].nbytes *= 2;
  expect_error(a, t.params, "scales");
}
