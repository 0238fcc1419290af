#include <gtest/gtest.h>

#include <cmath>

#include "base/error.h"
#include "codec_test_util.h"
#include "codecs/codec_registry.h"
#include "codecs/codec_util.h"
#include "codecs/mdcsr/mdcsr_codec.h"

using namespace upg;
using namespace upg::test;

namespace {

int64_t count_nonzero(const std::vector<float>& v) {
  int64_t n = 0;
  for (float x : v) n += x != 0.0f;
  return n;
}

}  // namespace

TEST(CodecMdcsr, KeepFractionKeepsTheLargestEntries) {
  auto codec = make_codec("mdcsr");
  const int64_t rows = 40, cols = 300;
  auto W = gaussian_matrix(rows, cols, 3);
  EncodedTensor t = codec->encode(W.data(), rows, cols, {{"keep_fraction", 0.05}});
  auto views = t.views();
  auto m = codec->open(views, rows, cols, t.params);
  auto D = decode_all(*m);
  const int64_t kept = std::llround(0.05 * rows * cols);
  EXPECT_EQ(t.arrays.at("values").shape[0], kept);
  // Smallest kept magnitude >= largest dropped magnitude.
  float min_kept = INFINITY, max_dropped = 0;
  for (int64_t r = 0; r < rows; ++r) {
    float s = load_le<float>(t.arrays.at("scales").bytes.data(), r);
    for (int64_t c = 0; c < cols; ++c) {
      const float w = W[r * cols + c], d = D[r * cols + c];
      if (d != 0.0f) {
        min_kept = std::min(min_kept, std::fabs(w));
        ASSERT_LE(std::fabs(w - d), 0.5f * s * 1.001f);
      } else {
        max_dropped = std::max(max_dropped, std::fabs(w));
      }
    }
  }
  EXPECT_GE(min_kept, max_dropped);
  expect_matmul_matches_reference(*m, 21);
}

TEST(CodecMdcsr, ThresholdKeepsEntriesAboveIt) {
  auto codec = make_codec("mdcsr");
  const int64_t rows = 16, cols = 700;
  auto W = gaussian_matrix(rows, cols, 4);
  EncodedTensor t = codec->encode(W.data(), rows, cols, {{"threshold", 0.04}});
  auto views = t.views();
  auto D = decode_all(*codec->open(views, rows, cols, t.params));
  int64_t expected = 0;
  for (float w : W) expected += std::fabs(w) > 0.04f;
  EXPECT_EQ(t.arrays.at("values").shape[0], expected);
  for (size_t i = 0; i < W.size(); ++i)
    if (std::fabs(W[i]) <= 0.04f) ASSERT_EQ(D[i], 0.0f);
}

TEST(CodecMdcsr, EscapeCodingOfLongGaps) {
  // One row with columns chosen so gaps hit 1, 255, 256, 510, 511 and 600.
  const int64_t cols = 3000;
  const std::vector<int32_t> columns = {0, 1, 256, 512, 1022, 1533, 2133};
  SparseEntries e;
  e.row_start = {0, static_cast<int64_t>(columns.size())};
  e.col = columns;
  for (size_t i = 0; i < columns.size(); ++i) e.val.push_back(static_cast<float>(i + 1));
  EncodedTensor t = mdcsr_encode_entries(1, cols, e, {{"values", "int8"}}, nullptr);
  const std::vector<uint8_t> expected = {1, 1, 255, 0, 1, 0, 255, 0, 0, 1, 0, 0, 90};
  EXPECT_EQ(t.arrays.at("col_delta").bytes, expected);
  auto views = t.views();
  auto m = make_codec("mdcsr")->open(views, 1, cols, t.params);
  auto D = decode_all(*m);
  EXPECT_EQ(count_nonzero(D), static_cast<int64_t>(columns.size()));
  for (size_t i = 0; i < columns.size(); ++i) EXPECT_NEAR(D[columns[i]], i + 1.0f, (i + 1) * 0.004f + 7 / 254.0f);
  expect_matmul_matches_reference(*m, 5);
}

TEST(CodecMdcsr, ExhaustiveInt8ValuesAndEmptyRows) {
  // Hand-built: row 0 holds every int8 value -128..127 in columns 0..255, row 1 is empty.
  const int64_t rows = 2, cols = 300;
  Array values = make_array(DType::I8, {256}), deltas = make_array(DType::U8, {256});
  Array row_ptr = make_array(DType::U32, {2, 3}), scales = make_array(DType::F32, {2});
  for (int i = 0; i < 256; ++i) {
    values.bytes[i] = static_cast<uint8_t>(i);
    deltas.bytes[i] = 1;
  }
  for (int i : {1, 2}) store_le<uint32_t>(row_ptr.bytes.data(), i, 256);
  for (int i : {4, 5}) store_le<uint32_t>(row_ptr.bytes.data(), i, 256);
  store_le<float>(scales.bytes.data(), 0, 0.125f);
  EncodedTensor t;
  t.arrays = {{"values", values}, {"col_delta", deltas}, {"row_ptr", row_ptr}, {"scales", scales}};
  auto views = t.views();
  auto m = make_codec("mdcsr")->open(views, rows, cols, {{"values", "int8"}});
  auto D = decode_all(*m);
  for (int c = 0; c < cols; ++c) ASSERT_EQ(D[c], c < 256 ? static_cast<int8_t>(c) * 0.125f : 0.0f);
  for (int c = 0; c < cols; ++c) ASSERT_EQ(D[cols + c], 0.0f);
  expect_matmul_matches_reference(*m, 8);
}

TEST(CodecMdcsr, LevelsMode) {
  auto codec = make_codec("mdcsr");
  const int64_t rows = 24, cols = 256;
  auto W = gaussian_matrix(rows, cols, 9);
  auto h = random_importance(cols, 10);
  EncodedTensor t = codec->encode(W.data(), rows, cols,
                                  {{"keep_fraction", 0.3}, {"values", "levels"}, {"num_levels", 64}}, h.data());
  EXPECT_EQ(t.arrays.at("values").dtype, DType::U16);
  EXPECT_EQ(t.arrays.at("levels").shape, (std::vector<int64_t>{64}));
  auto views = t.views();
  auto m = codec->open(views, rows, cols, t.params);
  auto D = decode_all(*m);
  // Kept entries are reconstructed to within a small fraction of their row's scale.
  for (int64_t r = 0; r < rows; ++r) {
    float s = load_le<float>(t.arrays.at("scales").bytes.data(), r);
    for (int64_t c = 0; c < cols; ++c)
      if (D[r * cols + c] != 0.0f) ASSERT_LE(std::fabs(W[r * cols + c] - D[r * cols + c]), 0.06f * s);
  }
  expect_matmul_matches_reference(*m, 12);
}

TEST(CodecMdcsr, BitsPerWeight) {
  auto codec = make_codec("mdcsr");
  const int64_t rows = 50, cols = 400;
  auto W = gaussian_matrix(rows, cols, 13);
  EncodedTensor t = codec->encode(W.data(), rows, cols, {{"keep_fraction", 0.1}});
  const int64_t nnz = t.arrays.at("values").shape[0], D = t.arrays.at("col_delta").shape[0];
  EXPECT_EQ(t.total_bytes(), static_cast<size_t>(nnz + D + 8 * (rows + 1) + 4 * rows));
  EXPECT_EQ(D, nnz);  // gaps over 255 are unlikely at 10% density but then D > nnz; here none
  auto views = t.views();
  EXPECT_EQ(codec->open(views, rows, cols, t.params)->stored_bytes(), t.total_bytes());
  EXPECT_NEAR(t.bits_per_weight(rows, cols), 0.1 * 16 + 96.0 / cols + 64.0 / (rows * cols), 0.01);
}

TEST(CodecMdcsr, BadArraysThrow) {
  auto codec = make_codec("mdcsr");
  const int64_t rows = 6, cols = 600;
  auto W = gaussian_matrix(rows, cols, 14);
  W[1 * cols + 0] = 1.0f;  // row 1: columns 0 and 599 -> escapes in the gap
  W[1 * cols + 599] = 1.0f;
  EncodedTensor t = codec->encode(W.data(), rows, cols, {{"keep_fraction", 0.02}});
  auto expect_error = [&](const EncodedTensor& tt, const std::string& needle, CodecParams p = nullptr) {
    auto a = tt.views();
    try {
      codec->open(a, rows, cols, p.is_null() ? tt.params : p);
      FAIL() << "expected an Error mentioning " << needle;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  auto set_ptr = [](EncodedTensor& tt, int64_t i, uint32_t v) {
    store_le<uint32_t>(tt.arrays.at("row_ptr").bytes.data(), i, v);
  };
  {  // row pointer decreases
    EncodedTensor b = t;
    set_ptr(b, 2, load_le<uint32_t>(b.arrays.at("row_ptr").bytes.data(), 1) - 1);
    expect_error(b, "row_ptr");
  }
  {  // row pointer end disagrees with the values length
    EncodedTensor b = t;
    b.arrays.at("values").bytes.pop_back();
    b.arrays.at("values").shape[0] -= 1;
    expect_error(b, "row_ptr");
  }
  {  // a column past the end: make the first gap of row 0 huge
    EncodedTensor b = t;
    b.arrays.at("col_delta").bytes[0] = 0;
    b.arrays.at("col_delta").bytes[1] = 0;
    b.arrays.at("col_delta").bytes[2] = 250;
    expect_error(b, "col_delta");
  }
  {  // the delta stream of the last row ends inside an escape
    EncodedTensor b = t;
    auto& d = b.arrays.at("col_delta").bytes;
    d.back() = 0;
    expect_error(b, "col_delta");
  }
  {  // wrong byte size and wrong dtype
    auto a = t.views();
    a["scales"].nbytes -= 4;
    EXPECT_THROW(codec->open(a, rows, cols, t.params), Error);
    a = t.views();
    a["values"].dtype = DType::U8;
    EXPECT_THROW(codec->open(a, rows, cols, t.params), Error);
  }
  {  // level index out of range
    EncodedTensor lv = codec->encode(W.data(), rows, cols, {{"keep_fraction", 0.1}, {"values", "levels"}, {"num_levels", 16}});
    store_le<uint16_t>(lv.arrays.at("values").bytes.data(), 3, 16);
    expect_error(lv, "levels");
  }
  EXPECT_THROW(codec->encode(W.data(), rows, cols, {{"rotate", true}}), Error);
}

// A token's product does not depend on the other tokens of the call (codec_test_util.h), int8 and
// level values, 37 x 640.
TEST(CodecMdcsr, ProductOfATokenDoesNotDependOnTheOthers) {
  auto codec = make_codec("mdcsr");
  const int64_t rows = 37, cols = 640;
  auto W = heavy_tailed_matrix(rows, cols, 71);
  for (const char* values : {"int8", "levels"}) {
    CodecParams p = {{"keep_fraction", 0.1}, {"values", values}};
    if (std::string(values) == "levels") p["num_levels"] = 64;
    EncodedTensor t = codec->encode(W.data(), rows, cols, p);
    auto views = t.views();
    auto m = codec->open(views, rows, cols, t.params);
    expect_product_independent_of_batch(*m, 72, std::string("mdcsr ") + values);
  }
}
