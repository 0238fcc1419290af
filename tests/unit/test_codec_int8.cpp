#include <gtest/gtest.h>

#include <cmath>

#include "base/error.h"
#include "base/half.h"
#include "codec_test_util.h"
#include "codecs/codec_registry.h"
#include "codecs/codec_util.h"

using namespace upg;
using namespace upg::test;

TEST(CodecInt8, RoundTripWithinHalfAStep) {
  auto codec = make_codec("int8");
  for (int64_t group : {0, 32, 64, 128})
    for (const char* sd : {"f16", "f32"}) {
      const int64_t rows = 13, cols = 200;  // 200 = 6 groups of 32 + a partial one
      auto W = gaussian_matrix(rows, cols, 7 + static_cast<uint32_t>(group));
      EncodedTensor t = codec->encode(W.data(), rows, cols, {{"group", group}, {"scale_dtype", sd}});
      auto views = t.views();
      auto m = codec->open(views, rows, cols, t.params);
      auto D = decode_all(*m);
      const int64_t G = group == 0 ? cols : group, ng = (cols + G - 1) / G;
      ASSERT_EQ(t.arrays.at("scales").shape, (std::vector<int64_t>{rows, ng}));
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < cols; ++c) {
          const Array& s = t.arrays.at("scales");
          size_t si = r * ng + c / G;
          float scale = s.dtype == DType::F16 ? load_f16(s.bytes.data(), si) : load_le<float>(s.bytes.data(), si);
          ASSERT_LE(std::fabs(W[r * cols + c] - D[r * cols + c]), 0.5f * scale * 1.01f + 1e-12f)
              << "group " << group << " r " << r << " c " << c;
        }
      EXPECT_LT(rel_error(W, D, cols), 0.01);
      expect_matmul_matches_reference(*m, 11);
    }
}

TEST(CodecInt8, ExhaustiveCodesDecodeExactly) {
  // Hand-built arrays: every code -128..127, one row per scale.
  const int64_t rows = 3, cols = 256;
  Array q = make_array(DType::I8, {rows, cols});
  Array s = make_array(DType::F32, {rows, 1});
  const float scales[3] = {0.5f, -0.25f, 3.0f};
  for (int64_t r = 0; r < rows; ++r) {
    store_le<float>(s.bytes.data(), r, scales[r]);
    for (int64_t c = 0; c < cols; ++c) q.bytes[r * cols + c] = static_cast<uint8_t>(c);
  }
  EncodedArrays a{{"qweight", {q.bytes.data(), q.bytes.size(), DType::I8, q.shape}},
                  {"scales", {s.bytes.data(), s.bytes.size(), DType::F32, s.shape}}};
  auto m = make_codec("int8")->open(a, rows, cols, {{"group", 0}, {"scale_dtype", "f32"}});
  auto D = decode_all(*m);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c)
      ASSERT_EQ(D[r * cols + c], static_cast<float>(static_cast<int8_t>(c)) * scales[r]);
  expect_matmul_matches_reference(*m, 3);
}

TEST(CodecInt8, BitsPerWeight) {
  auto codec = make_codec("int8");
  auto W = gaussian_matrix(64, 256, 1);
  EncodedTensor t = codec->encode(W.data(), 64, 256, {{"group", 64}});
  EXPECT_DOUBLE_EQ(t.bits_per_weight(64, 256), 8.0 + 16.0 / 64);
  auto views = t.views();
  EXPECT_EQ(codec->open(views, 64, 256, t.params)->stored_bytes(), t.total_bytes());
  EXPECT_EQ(find_codec("int8").nominal_bits, 8.0 + 16.0 / 128);
}

TEST(CodecInt8, ImportanceLowersWeightedError) {
  auto codec = make_codec("int8");
  const int64_t rows = 32, cols = 256;
  auto W = gaussian_matrix(rows, cols, 5);
  auto h = random_importance(cols, 6);
  EncodedTensor plain = codec->encode(W.data(), rows, cols, {{"group", 0}});
  EncodedTensor weighted = codec->encode(W.data(), rows, cols, {{"group", 0}}, h.data());
  auto vp = plain.views(), vw = weighted.views();
  double ep = rel_error(W, decode_all(*codec->open(vp, rows, cols, plain.params)), cols, h.data());
  double ew = rel_error(W, decode_all(*codec->open(vw, rows, cols, weighted.params)), cols, h.data());
  EXPECT_LE(ew, ep * 1.0001);
}

TEST(CodecInt8, BadArraysThrow) {
  auto codec = make_codec("int8");
  auto W = gaussian_matrix(8, 64, 2);
  EncodedTensor t = codec->encode(W.data(), 8, 64, {{"group", 32}});
  auto expect_error = [&](EncodedArrays a, const CodecParams& p, const std::string& needle) {
    try {
      codec->open(a, 8, 64, p);
      FAIL() << "expected an Error mentioning " << needle;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  auto a = t.views();
  a["qweight"].nbytes -= 1;
  expect_error(a, t.params, "qweight");
  a = t.views();
  a["qweight"].shape = {8, 63};
  a["qweight"].nbytes = 8 * 63;
  expect_error(a, t.params, "qweight");
  a = t.views();
  a.erase("scales");
  expect_error(a, t.params, "scales");
  a = t.views();
  a["scales"].dtype = DType::F32;
  expect_error(a, t.params, "scales");
  expect_error(t.views(), {{"group", 16}}, "scales");  // params disagree with the arrays
  expect_error(t.views(), {{"group", "x"}}, "group");
  expect_error(t.views(), {{"scale_dtype", "bf16"}}, "scale_dtype");
  EXPECT_THROW(make_codec("int9"), Error);
}

// A token's product does not depend on the other tokens of the call (codec_test_util.h): 37 rows (a
// partial 16-row tile), 640 columns (5 groups of 128; a second, partial 512-column tile).
TEST(CodecInt8, ProductOfATokenDoesNotDependOnTheOthers) {
  auto codec = make_codec("int8");
  const int64_t rows = 37, cols = 640;
  auto W = gaussian_matrix(rows, cols, 61);
  for (int64_t group : {128, 0}) {
    EncodedTensor t = codec->encode(W.data(), rows, cols, {{"group", group}});
    auto views = t.views();
    auto m = codec->open(views, rows, cols, t.params);
    expect_product_independent_of_batch(*m, 62, "int8 group " + std::to_string(group));
  }
}
