// Codec::slice / slice_matrix: a block of a stored matrix as a matrix of its own, the way tensor
// parallelism shards projections. Each block decodes bit for bit to the same block of the whole
// matrix, and the shards' products recombine to the whole product (rows side by side, columns summed).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>

#include "base/error.h"
#include "base/half.h"
#include "codec_test_util.h"
#include "codecs/codec_registry.h"
#include "codecs/dense/dense_matrix.h"
#include "codecs/matrix_slice.h"

using namespace upg;
using namespace upg::test;

namespace {

// The block b of decode_all(m) (cols columns).
std::vector<float> block_of(const std::vector<float>& all, int64_t cols, const MatrixBlock& b) {
  std::vector<float> out;
  for (int64_t r = b.r0; r < b.r1; ++r) out.insert(out.end(), all.begin() + r * cols + b.c0, all.begin() + r * cols + b.c1);
  return out;
}

void expect_bits_equal(const std::vector<float>& a, const std::vector<float>& b, const std::string& what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  for (size_t i = 0; i < a.size(); ++i)
    ASSERT_EQ(std::memcmp(&a[i], &b[i], sizeof(float)), 0) << what << " element " << i << ": " << a[i] << " vs " << b[i];
}

// Splits [0, n) into `parts` ranges whose inner boundaries are multiples of `align`.
std::vector<int64_t> cuts(int64_t n, int parts, int64_t align, std::mt19937& rng) {
  std::vector<int64_t> c{0};
  for (int p = 1; p < parts; ++p) {
    const int64_t lo = c.back() + align, hi = n - (parts - p) * align;
    if (lo > hi) break;
    std::uniform_int_distribution<int64_t> d(lo / align, hi / align);
    c.push_back(d(rng) * align);
  }
  c.push_back(n);
  return c;
}

// Row shards side by side and column shards summed give m's product as accurately as m's own
// product does: both against the exact product of the decoded weights (some codecs multiply int8
// activations quantized per block, so neither is exact).
void expect_shards_recombine(const WeightMatrix& m, const std::vector<std::unique_ptr<WeightMatrix>>& shards,
                             const std::vector<MatrixBlock>& blocks, const std::string& what) {
  const int64_t n = 3, rows = m.rows(), cols = m.cols();
  std::vector<float> x = gaussian_matrix(n, cols, 77, 1.0f), y(n * rows), sum(n * rows, 0.0f);
  m.matmul(x.data(), n, y.data());
  for (size_t s = 0; s < shards.size(); ++s) {
    const MatrixBlock& b = blocks[s];
    std::vector<float> xs, ys(n * (b.r1 - b.r0));
    for (int64_t t = 0; t < n; ++t) xs.insert(xs.end(), x.begin() + t * cols + b.c0, x.begin() + t * cols + b.c1);
    shards[s]->matmul(xs.data(), n, ys.data());
    for (int64_t t = 0; t < n; ++t)
      for (int64_t r = b.r0; r < b.r1; ++r) sum[t * rows + r] += ys[t * (b.r1 - b.r0) + r - b.r0];
  }
  const std::vector<float> w = decode_all(m);
  double err_whole = 0, err_shards = 0, scale = 0;
  for (int64_t t = 0; t < n; ++t)
    for (int64_t r = 0; r < rows; ++r) {
      double exact = 0;
      for (int64_t j = 0; j < cols; ++j) exact += static_cast<double>(x[t * cols + j]) * w[r * cols + j];
      scale = std::max(scale, std::fabs(exact));
      err_whole = std::max(err_whole, std::fabs(y[t * rows + r] - exact));
      err_shards = std::max(err_shards, std::fabs(sum[t * rows + r] - exact));
    }
  EXPECT_LE(err_shards, 3 * err_whole + 2e-6 * scale) << what << ": shards' error " << err_shards << ", whole "
                                                      << err_whole << " (largest output " << scale << ")";
}

}  // namespace

TEST(CodecSlice, BlocksDecodeToTheSameWeightsAndShardsRecombine) {
  const int64_t rows = 45, cols = 384;
  const std::vector<float> W = heavy_tailed_matrix(rows, cols, 5);
  std::mt19937 rng(11);
  for (const CodecCase& c : stored_codec_cases()) {
    const std::string what = std::string(c.codec) + " " + c.params.dump();
    auto codec = make_codec(c.codec);
    const EncodedTensor t = codec->encode(W.data(), rows, cols, c.params);
    const auto views = t.views();
    auto m = codec->open(views, rows, cols, t.params);
    const std::vector<float> all = decode_all(*m);
    const int64_t align = slice_column_alignment(*m);
    EXPECT_EQ(align, codec->column_alignment(cols, t.params)) << what;
    for (int parts : {2, 3}) {
      // Row shards (column-parallel), then column shards (row-parallel), then both at once.
      for (int mode = 0; mode < 3; ++mode) {
        const std::vector<int64_t> rc = mode == 1 ? std::vector<int64_t>{0, rows} : cuts(rows, parts, 1, rng);
        const std::vector<int64_t> cc = mode == 0 ? std::vector<int64_t>{0, cols} : cuts(cols, parts, align, rng);
        std::vector<std::unique_ptr<WeightMatrix>> shards;
        std::vector<MatrixBlock> blocks;
        for (size_t i = 0; i + 1 < rc.size(); ++i)
          for (size_t j = 0; j + 1 < cc.size(); ++j) {
            const MatrixBlock b{rc[i], rc[i + 1], cc[j], cc[j + 1]};
            auto s = slice_matrix(*m, b);
            ASSERT_EQ(s->rows(), b.r1 - b.r0);
            ASSERT_EQ(s->cols(), b.c1 - b.c0);
            EXPECT_EQ(s->codec(), m->codec());
            ASSERT_NE(s->stored(), nullptr);
            EXPECT_EQ(s->stored()->codec, c.codec);
            expect_bits_equal(decode_all(*s), block_of(all, cols, b),
                              what + " block [" + std::to_string(b.r0) + "," + std::to_string(b.r1) + ")x[" +
                                  std::to_string(b.c0) + "," + std::to_string(b.c1) + ")");
            // A slice's own stored form slices again (shards of shards).
            if (b.r1 - b.r0 >= 2) {
              auto s2 = slice_matrix(*s, {1, b.r1 - b.r0, 0, b.c1 - b.c0});
              expect_bits_equal(decode_all(*s2), block_of(all, cols, {b.r0 + 1, b.r1, b.c0, b.c1}), what + " re-slice");
            }
            shards.push_back(std::move(s));
            blocks.push_back(b);
          }
        expect_shards_recombine(*m, shards, blocks, what);
      }
    }
  }
}

TEST(CodecSlice, DenseMatricesCutAnywhere) {
  const int64_t rows = 13, cols = 70;
  const std::vector<float> W = gaussian_matrix(rows, cols, 3, 1.0f);
  std::vector<uint8_t> f32(rows * cols * 4), bf16(rows * cols * 2), f16(rows * cols * 2);
  for (int64_t i = 0; i < rows * cols; ++i) {
    std::memcpy(&f32[i * 4], &W[i], 4);
    const uint16_t b = f32_to_bf16(W[i]), h = f32_to_f16(W[i]);
    std::memcpy(&bf16[i * 2], &b, 2);
    std::memcpy(&f16[i * 2], &h, 2);
  }
  for (auto [bytes, dt] : {std::pair{&f32, TensorDType::F32}, {&bf16, TensorDType::BF16}, {&f16, TensorDType::F16}}) {
    DenseMatrix m(bytes->data(), dt, rows, cols);
    EXPECT_EQ(slice_column_alignment(m), 1);
    const std::vector<float> all = decode_all(m);
    const MatrixBlock b{3, 11, 7, 50};
    auto s = slice_matrix(m, b);
    ASSERT_NE(dynamic_cast<const DenseMatrix*>(s.get()), nullptr);  // backends see a dense matrix
    EXPECT_EQ(s->codec(), m.codec());
    expect_bits_equal(decode_all(*s), block_of(all, cols, b), m.codec());
    // Odd widths (rows of any byte length) multiply right too.
    for (const MatrixBlock& o : {MatrixBlock{0, 13, 0, 43}, MatrixBlock{1, 12, 43, 70}, MatrixBlock{0, 13, 5, 6}}) {
      auto so = slice_matrix(m, o);
      expect_matmul_matches_reference(*so, 3);
    }
  }
}

TEST(CodecSlice, BadBlocksAreClearErrors) {
  const int64_t rows = 8, cols = 256;
  const std::vector<float> W = gaussian_matrix(rows, cols, 1);
  auto codec = make_codec("codebook");
  const EncodedTensor t = codec->encode(W.data(), rows, cols, {{"bits", 3}, {"group", 64}, {"rotate", true}});
  const auto views = t.views();
  auto m = codec->open(views, rows, cols, t.params);
  EXPECT_EQ(slice_column_alignment(*m), 256);  // the rotation block (256) covers every group
  auto expect_error = [&](const MatrixBlock& b, const std::string& needle) {
    try {
      slice_matrix(*m, b);
      ADD_FAILURE() << "no error for [" << b.r0 << "," << b.r1 << ")x[" << b.c0 << "," << b.c1 << ")";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  expect_error({0, 8, 0, 128}, "multiples of 256");
  expect_error({0, 9, 0, 256}, "not a non-empty block");
  expect_error({4, 4, 0, 256}, "not a non-empty block");
  expect_error({0, 8, -64, 256}, "not a non-empty block");
}
