// The trellis codec (codecs/trellis): the Viterbi search against brute force, packing and the
// bit-by-bit reference decoder, the SIMD decoders against the scalar one at every SIMD level, matmul
// against decode + dense product, the encoder's error against the scalar codebook at equal bits,
// and malformed arrays / params.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>

#include "base/error.h"
#include "codec_test_util.h"
#include "codecs/codebook/codebook_codec.h"
#include "codecs/codec_registry.h"
#include "codecs/codec_util.h"
#include "kernels/trellis_code.h"
#include "codecs/trellis/trellis_codec.h"
#include "codecs/trellis/viterbi.h"
#include "kernels/cpu/trellis_kernels.h"

using namespace upg;
using namespace upg::test;

namespace {

struct Opened {
  EncodedTensor t;
  EncodedArrays views;
  std::unique_ptr<WeightMatrix> m;
};
std::unique_ptr<Opened> open_encoded(EncodedTensor t, int64_t rows, int64_t cols) {
  auto o = std::make_unique<Opened>();
  o->t = std::move(t);
  o->views = o->t.views();
  o->m = make_codec(o->t.codec)->open(o->views, rows, cols, o->t.params);
  return o;
}

// Random chained states (every transition equally likely) and random scales of both signs.
std::unique_ptr<Opened> random_trellis(int k, int L, int64_t group, int64_t rows, int64_t cols, uint32_t seed,
                                       std::vector<uint32_t>* states_out = nullptr,
                                       std::vector<float>* scales_out = nullptr) {
  const TrellisLayout l = read_trellis_layout({{"bits", k}, {"state_bits", L}, {"group", group}}, cols);
  std::mt19937 rng(seed);
  std::vector<uint32_t> st(rows * cols);
  for (int64_t r = 0; r < rows; ++r) {
    st[r * cols] = rng() & ((1u << L) - 1);
    for (int64_t j = 1; j < cols; ++j)
      st[r * cols + j] = ((st[r * cols + j - 1] << k) | (rng() & ((1u << k) - 1))) & ((1u << L) - 1);
  }
  std::normal_distribution<float> nd(0.0f, 0.01f);
  std::vector<float> sc(rows * l.ngroups);
  for (float& s : sc) s = f16_to_f32(f32_to_f16(nd(rng)));
  if (states_out) *states_out = st;
  if (scales_out) *scales_out = sc;
  return open_encoded(trellis_from_states(l, rows, cols, st.data(), sc.data()), rows, cols);
}

}  // namespace

TEST(TrellisCode, ComputedCodeIsCenteredAndGaussianLike) {
  // Values from the definition, then the moments over all 2^16 states.
  uint32_t x = 76625530u;
  EXPECT_EQ(trellis::code_int(0), int((x & 255) + ((x >> 8) & 255) + ((x >> 16) & 255) + (x >> 24)) - 510);
  x = 34038481u * 12345u + 76625530u;
  EXPECT_EQ(trellis::code_int(12345), int((x & 255) + ((x >> 8) & 255) + ((x >> 16) & 255) + (x >> 24)) - 510);
  double m = 0, v = 0;
  const auto& t = trellis::code_table(16);
  for (float c : t) m += c;
  m /= t.size();
  for (float c : t) v += (c - m) * (c - m);
  v /= t.size();
  EXPECT_NEAR(m, 0.0, 0.02);
  EXPECT_NEAR(std::sqrt(v), 1.1547, 0.03);
}

// Brute force over every chain of a short sequence, free start and fixed start.
TEST(TrellisViterbi, EqualsBruteForce) {
  std::mt19937 rng(5);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::uniform_real_distribution<float> ud(0.0f, 2.0f);
  for (auto [K, L, n] : std::vector<std::tuple<int, int, int>>{{1, 4, 7}, {2, 5, 5}, {3, 6, 4}, {4, 7, 3}, {2, 3, 6}, {5, 7, 3}}) {
    for (int64_t prev : {int64_t{-1}, int64_t{5}}) {
      std::vector<float> t(n), u(n);
      for (int i = 0; i < n; ++i) {
        t[i] = nd(rng);
        u[i] = ud(rng);
      }
      trellis::ViterbiScratch scratch;
      std::vector<uint32_t> got(n);
      const double cost = trellis::viterbi_search(K, L, t.data(), u.data(), n, prev, got.data(), scratch);
      // Enumerate: first state (all, or the 2^K successors of prev), then K bits per step.
      const uint32_t mask = (1u << L) - 1;
      const int64_t firsts = prev < 0 ? (int64_t{1} << L) : (int64_t{1} << K);
      double best = std::numeric_limits<double>::infinity();
      for (int64_t f = 0; f < firsts; ++f)
        for (int64_t tail = 0; tail < (int64_t{1} << (K * (n - 1))); ++tail) {
          uint32_t s = prev < 0 ? static_cast<uint32_t>(f) : ((static_cast<uint32_t>(prev) << K) | f) & mask;
          double c = u[0] * std::pow(t[0] - trellis::code(s), 2);
          for (int i = 1; i < n; ++i) {
            s = ((s << K) | ((tail >> (K * (i - 1))) & ((1 << K) - 1))) & mask;
            c += u[i] * std::pow(t[i] - trellis::code(s), 2);
          }
          best = std::min(best, c);
        }
      EXPECT_NEAR(cost, best, 1e-4 * (1 + best)) << "K=" << K << " L=" << L << " prev=" << prev;
      // The returned chain is valid and has the returned cost.
      double c = 0;
      for (int i = 0; i < n; ++i) {
        if (i > 0) { ASSERT_EQ(got[i] >> K, got[i - 1] & ((1u << (L - K)) - 1)); }
        if (i == 0 && prev >= 0) { ASSERT_EQ(got[0] >> K, static_cast<uint32_t>(prev) & ((1u << (L - K)) - 1)); }
        c += u[i] * std::pow(t[i] - trellis::code(got[i]), 2);
      }
      EXPECT_NEAR(c, cost, 1e-4 * (1 + cost));
    }
  }
}

TEST(TrellisCodec, PackedStatesDecodeBitExactly) {
  for (auto [k, L, group, rows, cols] : std::vector<std::tuple<int, int, int64_t, int64_t, int64_t>>{
           {3, 12, 64, 5, 203}, {1, 9, 8, 3, 61}, {2, 16, 24, 4, 130}, {4, 12, 128, 3, 512}, {4, 5, 8, 2, 1},
           {5, 12, 512, 3, 1030}, {5, 16, 64, 2, 77}}) {
    std::vector<uint32_t> st;
    std::vector<float> sc;
    auto o = random_trellis(k, L, group, rows, cols, 7 + k, &st, &sc);
    const std::vector<float> W = decode_all(*o->m);
    const int64_t ng = (cols + group - 1) / group;
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t j = 0; j < cols; ++j)
        ASSERT_EQ(W[r * cols + j], sc[r * ng + j / group] * trellis::code(st[r * cols + j]))
            << "k=" << k << " L=" << L << " (" << r << ", " << j << ")";
    EXPECT_EQ(o->t.arrays.at("qweight").bytes.size(), size_t(rows * ((L + (cols - 1) * k + 7) / 8)));
  }
}

// The chunk decoders (AVX2: 8 per step, AVX-512: 16) give exactly the scalar decoder's floats for
// every K, L, group and segment start/length; matmul (n = 1, 3, 17) agrees with decode + dense product.
// Groups of 48 and 512 (the converter's) over several 512-column tiles too.
void check_kernels(SimdLevel level) {
  set_simd_cap(level);
  uint32_t seed = 40;
  for (int k = 1; k <= 5; ++k)
    for (int L : {k + 1, 8, 12, 16})
      for (auto [group, rows, cols] :
           std::vector<std::tuple<int64_t, int64_t, int64_t>>{{64, 7, 203}, {8, 5, 61}, {24, 3, 1030}, {512, 4, 512}, {48, 3, 1100}, {512, 2, 1560}}) {
        auto o = random_trellis(k, L, group, rows, cols, ++seed);
        const auto* tm = o->m.get();
        kernels::TrellisView v;
        v.k = k, v.l = L, v.rows = rows, v.cols = cols, v.group = group, v.ngroups = (cols + group - 1) / group;
        v.row_bytes = (L + (cols - 1) * k + 7) / 8;
        v.q = o->views.at("qweight").data;
        v.scales = o->views.at("scales").data;
        const std::vector<float> W = decode_all(*tm);
        for (int64_t r = 0; r < rows; ++r)
          for (auto [c0, m] : std::vector<std::pair<int64_t, int64_t>>{{0, cols}, {8, cols - 8}, {16, std::min<int64_t>(40, cols - 16)}, {3, cols - 3}}) {
            if (m <= 0) continue;
            std::vector<float> fast(m + 1, 12345.f), ref(m);
            kernels::trellis_decode_segment(v, r, c0, m, fast.data());
            kernels::trellis_decode_segment_scalar(v, r, c0, m, ref.data());
            for (int64_t i = 0; i < m; ++i) {
              ASSERT_EQ(fast[i], ref[i]) << simd_level_name(level) << " k=" << k << " L=" << L << " G=" << group
                                         << " row " << r << " segment " << c0 << "+" << i;
              ASSERT_EQ(ref[i], W[r * cols + c0 + i]);
            }
            ASSERT_EQ(fast[m], 12345.f) << "wrote past the segment";
          }
        expect_matmul_matches_reference(*tm, seed);
      }
  set_simd_cap(std::nullopt);
}

TEST(TrellisKernels, Avx2MatchesScalar) { check_kernels(SimdLevel::Avx2); }
TEST(TrellisKernels, Avx512MatchesScalar) {
  if (cpu_simd_level() < SimdLevel::Avx512) GTEST_SKIP() << "this CPU has no AVX-512 F/BW/VL: the AVX-512 path is not run here";
  check_kernels(SimdLevel::Avx512);
}

// On Gaussian weights the trellis code's error is well below the scalar codebook's at equal bits
// (Lloyd-Max vs. trellis: about 0.61x, 0.55x, 0.53x of the squared error at 2, 3, 4 bits with L = 12;
// at 5 bits, with 7 bits of memory left in a 12-bit state, 0.71x).
TEST(TrellisCodec, BeatsScalarCodebookOnGaussianWeights) {
  const int64_t rows = 24, cols = 512;
  const std::vector<float> W = gaussian_matrix(rows, cols, 11);
  for (int k : {2, 3, 4, 5}) {
    const EncodedTensor t = make_codec("trellis")->encode(W.data(), rows, cols, {{"bits", k}, {"group", 128}});
    const EncodedTensor c = make_codec("codebook")->encode(W.data(), rows, cols, {{"bits", k}, {"group", 128}});
    auto ot = open_encoded(t, rows, cols);
    auto oc = open_encoded(c, rows, cols);
    const double et = rel_error(W, decode_all(*ot->m), cols), ec = rel_error(W, decode_all(*oc->m), cols);
    EXPECT_LT(et * et, (k == 5 ? 0.8 : 0.72) * ec * ec) << "k=" << k << ": trellis " << et << ", codebook " << ec;
    EXPECT_NEAR(t.bits_per_weight(rows, cols), k + 16.0 / 128 + (12.0 - k) / cols, 0.02) << k;
    std::printf("k=%d: relative error trellis %.4f, codebook %.4f (squared ratio %.2f)\n", k, et, ec, et * et / (ec * ec));
  }
}

// Importance moves the error to the unimportant columns; rotation goes through the shared option.
TEST(TrellisCodec, ImportanceAndRotation) {
  const int64_t rows = 16, cols = 256;
  const std::vector<float> W = gaussian_matrix(rows, cols, 12);
  std::vector<float> h(cols, 1.0f);
  for (int64_t j = 0; j < cols; j += 4) h[j] = 100.0f;  // inside every group: the search can favour them
  const EncodedTensor plain = make_codec("trellis")->encode(W.data(), rows, cols, {{"bits", 2}});
  const EncodedTensor imp = make_codec("trellis")->encode(W.data(), rows, cols, {{"bits", 2}}, h.data());
  auto op = open_encoded(plain, rows, cols);
  auto oi = open_encoded(imp, rows, cols);
  EXPECT_LT(rel_error(W, decode_all(*oi->m), cols, h.data()), 0.9 * rel_error(W, decode_all(*op->m), cols, h.data()));
  const EncodedTensor rot = make_codec("trellis")->encode(W.data(), rows, cols, {{"bits", 3}, {"rotate", true}});
  auto orot = open_encoded(rot, rows, cols);
  EXPECT_LT(rel_error(W, decode_all(*orot->m), cols), 0.2);
  expect_matmul_matches_reference(*orot->m, 3);
}

TEST(TrellisCodec, RejectsBadParamsArraysAndWeights) {
  const int64_t rows = 4, cols = 64;
  const std::vector<float> W = gaussian_matrix(rows, cols, 13);
  auto codec = make_codec("trellis");
  auto expect_error = [](auto&& f, const std::string& needle) {
    try {
      f();
      ADD_FAILURE() << "no error, expected one mentioning '" << needle << "'";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  expect_error([&] { codec->encode(W.data(), rows, cols, {{"bits", 6}}); }, "bits");
  expect_error([&] { codec->encode(W.data(), rows, cols, {{"bits", 3}, {"state_bits", 3}}); }, "state_bits");
  expect_error([&] { codec->encode(W.data(), rows, cols, {{"group", 12}}); }, "group");
  std::vector<float> bad = W;
  bad[70] = NAN;
  expect_error([&] { codec->encode(bad.data(), rows, cols, {}); }, "not finite");
  const EncodedTensor t = codec->encode(W.data(), rows, cols, {});
  EncodedArrays a = t.views();
  a["qweight"].nbytes -= 1;
  expect_error([&] { codec->open(a, rows, cols, t.params); }, "qweight");
  a = t.views();
  a.erase("scales");
  expect_error([&] { codec->open(a, rows, cols, t.params); }, "scales");
  EncodedTensor inf = t;
  store_le<uint16_t>(inf.arrays["scales"].bytes.data(), 3, 0x7c00);  // +inf
  expect_error([&] { codec->open(inf.views(), rows, cols, inf.params); }, "not finite");
  // Unchained states cannot be packed.
  const TrellisLayout l = read_trellis_layout({}, 3);
  std::vector<uint32_t> st = {1, 2, 3};
  std::vector<float> sc = {1.0f};
  expect_error([&] { trellis_from_states(l, 1, 3, st.data(), sc.data()); }, "does not follow");
}

// docs/CODECS.md's worked example: bytes A5 3C 80, K = 3, L = 12, three weights.
TEST(TrellisCodec, DocumentedExampleDecodes) {
  EncodedTensor t;
  t.codec = "trellis";
  t.params = {{"bits", 3}, {"state_bits", 12}, {"group", 64}};
  Array q = make_array(DType::U8, {1, 3});
  q.bytes = {0xA5, 0x3C, 0x80};
  Array s = make_array(DType::F16, {1, 1});
  store_le<uint16_t>(s.bytes.data(), 0, f32_to_f16(0.01f));
  t.arrays["qweight"] = q;
  t.arrays["scales"] = s;
  auto o = open_encoded(t, 1, 3);
  const std::vector<float> W = decode_all(*o->m);
  EXPECT_EQ(trellis::code(2643), 0.8828125f);
  EXPECT_EQ(f16_to_f32(f32_to_f16(0.01f)), 0.01000213623046875f);
  EXPECT_EQ(W[0], 0.01000213623046875f * 0.8828125f);
  EXPECT_EQ(W[1], 0.01000213623046875f * trellis::code(670));
  EXPECT_EQ(W[2], 0.01000213623046875f * trellis::code(1266));
}

// A token's product does not depend on the other tokens of the call (codec_test_util.h), through
// both paths (fused for n <= kFusedTokens, tiled above): random chained states, K = 2, 3, 4, L = 12,
// groups of 128, 37 x 640 (a scalar tail at the row's end, a partial 16-row tile, two column tiles)
// and 37 x 520 (the row's end, where 16-byte loads stop, already in the first column tile).
TEST(TrellisCodec, ProductOfATokenDoesNotDependOnTheOthers) {
  const int64_t rows = 37;
  for (int64_t cols : {640, 520, 1100})
    for (int k : {2, 3, 4}) {
      auto o = random_trellis(k, 12, cols == 1100 ? 48 : 128, rows, cols, 80 + k);
      expect_product_independent_of_batch(*o->m, 90 + k, "trellis K=" + std::to_string(k) + ", " +
                                                              std::to_string(cols) + " columns");
    }
}
