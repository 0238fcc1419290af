// CUDA kernels (src/kernels/cuda, host API cuda_ops.h) against their plain CPU references on fresh
// random inputs: the packed skinny GEMM for codebook (2-6 bits, rotate on/off, several groups and
// codebook blocks, the bf16 fallback), int8 (f16/f32 scales, per-row and grouped) and dense weights
// against the codec's decode_rows; the Hadamard rotation against codecs/compose.h; RMSNorm, RoPE,
// SiLU*up and GELU-tanh*up against kernels/cpu; the elementwise ops (bias, add, scale, soft-cap,
// column copies, row gathers) against plain loops; the bf16 K/V store byte for byte against
// kernels::kv_store_row; decode attention over the paged bf16 KV cache (a table of separately
// allocated blocks) against kernels/cpu/attention.h (GQA, long contexts split over positions, sliding
// window, soft-capping, several query tokens of one sequence).
// Without a CUDA device every test skips with "no CUDA device: ..." (CI has no GPU).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <iterator>
#include <numeric>
#include <random>
#include <tuple>

#include "base/error.h"
#include "base/half.h"
#include "codecs/codebook/codebook_codec.h"
#include "codecs/codec_registry.h"
#include "codecs/compose.h"
#include "kernels/cpu/activation.h"
#include "kernels/cpu/attention.h"
#include "kernels/cpu/norm.h"
#include "kernels/cpu/rope.h"
#include "kernels/logit_select.h"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/gemv_layout.h"
#include "test_util.h"

using namespace upg;
namespace cu = upg::cuda;

#define REQUIRE_CUDA_DEVICE()                                                \
  do {                                                                       \
    std::string why_;                                                        \
    if (cu::device_count(&why_) == 0) GTEST_SKIP() << "no CUDA device: " << why_; \
  } while (0)

namespace {

std::mt19937& rng() {
  static std::mt19937 r(std::random_device{}());
  return r;
}

std::vector<float> randn(size_t n, float scale = 1.0f) {
  std::normal_distribution<float> d(0.f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng());
  return v;
}

cu::DeviceBuffer to_dev(const void* p, size_t bytes) {
  cu::DeviceBuffer b(bytes);
  b.upload(p, bytes);
  return b;
}
template <class T>
cu::DeviceBuffer to_dev(const std::vector<T>& v) {
  return to_dev(v.data(), v.size() * sizeof(T));
}
std::vector<float> from_dev(const cu::DeviceBuffer& b, size_t n) {
  std::vector<float> v(n);
  b.download(v.data(), n * sizeof(float));
  return v;
}
// A device buffer of n floats filled with NaN (so an unwritten output fails the comparison).
cu::DeviceBuffer poisoned(size_t n) {
  return to_dev(std::vector<float>(n, std::numeric_limits<float>::quiet_NaN()));
}

// y = x W^T on the GPU against the decoded W in double: every element within the bf16 rounding of
// weights and activations, 2^-7 * sum |w x| (plus fp32 accumulation slack).
// With `gemm`, n > 16 takes the prefill path (W decoded to bf16 a block of rows at a time, cuBLAS).
void check_matmul(const cu::DeviceMatrix& dm, const std::vector<float>& W, int64_t rows, int64_t cols, int64_t n,
                  const std::string& what, cu::GemmWorkspace* gemm = nullptr) {
  const std::vector<float> x = randn(static_cast<size_t>(n * cols));
  cu::DeviceBuffer dx = to_dev(x), dy = poisoned(static_cast<size_t>(n * rows));
  dm.matmul(dx.as<float>(), n, dy.as<float>(), nullptr, gemm, 17);
  cu::synchronize();
  const std::vector<float> y = from_dev(dy, static_cast<size_t>(n * rows));
  // matmul_add on the same x, into a y0 of random values: y0 + x W^T.
  const std::vector<float> y0 = randn(static_cast<size_t>(n * rows));
  cu::DeviceBuffer dy0 = to_dev(y0);
  dm.matmul_add(dx.as<float>(), n, dy0.as<float>(), nullptr, gemm, 17);
  cu::synchronize();
  const std::vector<float> y1 = from_dev(dy0, y0.size());
  int bad = 0, bad_add = 0;
  for (int64_t i = 0; i < n; ++i)
    for (int64_t r = 0; r < rows; ++r) {
      double ref = 0, mag = 0;
      for (int64_t c = 0; c < cols; ++c) {
        ref += static_cast<double>(W[r * cols + c]) * x[i * cols + c];
        mag += std::fabs(static_cast<double>(W[r * cols + c]) * x[i * cols + c]);
      }
      const size_t o = static_cast<size_t>(i * rows + r);
      const double got = y[o], tol = 0.0079 * mag + 1e-6;
      if (!(std::fabs(got - ref) <= tol) && bad++ < 5)
        ADD_FAILURE() << what << " n=" << n << " y[" << i << "][" << r << "] = " << got << ", want " << ref
                      << " (tol " << tol << ")";
      const double added = static_cast<double>(y1[o]) - y0[o];
      if (!(std::fabs(added - ref) <= tol + 1e-6 * std::fabs(y0[o])) && bad_add++ < 5)
        ADD_FAILURE() << what << " n=" << n << " matmul_add y[" << i << "][" << r << "] = " << y0[o] << " + " << added
                      << ", want + " << ref << " (tol " << tol << ")";
    }
  EXPECT_EQ(bad, 0) << what << " n=" << n << ": " << bad << " of " << n * rows << " outputs off";
  EXPECT_EQ(bad_add, 0) << what << " n=" << n << ": matmul_add, " << bad_add << " of " << n * rows << " outputs off";
}

// The skinny path at n = 1, 3, 16 and the prefill GEMM at n = 17, 40, 100, its scratch holding only
// 40 KiB of decoded rows (so that a matrix is decoded in several blocks of row tiles), then at n = 40
// with 1 MiB of scratch, and with the whole matrix in one block under the tile decoder's launch shapes
// 2 x 2, 3 x 2 and 8 x 3 (row tiles x slices per warp; the default is 1 x 1): several row tiles and
// codebook blocks per thread block, prefetches across row tiles.
void check_products(const cu::DeviceMatrix& dm, const std::vector<float>& W, int64_t rows, int64_t cols,
                    const std::string& what) {
  // Kept to the end (cuBLAS outlives the tests).
  static cu::GemmWorkspace* gemm = new cu::GemmWorkspace(40 << 10);
  static cu::GemmWorkspace* whole = new cu::GemmWorkspace(size_t{16} << 20);
  static cu::GemmWorkspace* mib = new cu::GemmWorkspace(size_t{1} << 20);  // 128 tiles
  ASSERT_TRUE(gemm->available()) << "the prefill GEMM path is not available: " << gemm->why_not();
  for (int64_t n : {1, 3, 16}) check_matmul(dm, W, rows, cols, n, what);
  for (int64_t n : {17, 40, 100}) check_matmul(dm, W, rows, cols, n, what + " (GEMM)", gemm);
  check_matmul(dm, W, rows, cols, 40, what + " (GEMM, 1 MiB scratch)", mib);
  for (auto [tpb, spw] : {std::pair{2, 2}, std::pair{3, 2}, std::pair{8, 3}}) {
    whole->set_decode_shape(tpb, spw);
    check_matmul(dm, W, rows, cols, 40,
                 what + " (GEMM, one block, decode " + std::to_string(tpb) + "x" + std::to_string(spw) + ")", whole);
  }
}

struct CbCase {
  int64_t rows, cols;
  int bits, group;
  int64_t cb_rows;
  bool rotate;
};

void run_codebook(const CbCase& c) {
  const int nl = 1 << c.bits;
  const int64_t ng = (c.cols + c.group - 1) / c.group;
  const int64_t nb = c.cb_rows ? (c.rows + c.cb_rows - 1) / c.cb_rows : 1;
  std::vector<uint8_t> codes(static_cast<size_t>(c.rows * c.cols));
  std::uniform_int_distribution<int> cd(0, nl - 1);
  for (auto& v : codes) v = static_cast<uint8_t>(cd(rng()));
  std::vector<float> scales = randn(static_cast<size_t>(c.rows * ng), 0.02f);  // signed, like the codec's
  std::vector<float> levels = randn(static_cast<size_t>(nb * nl));
  for (int64_t b = 0; b < nb; ++b) std::sort(levels.begin() + b * nl, levels.begin() + (b + 1) * nl);
  const CodecParams p = {{"bits", c.bits}, {"group", c.group}, {"levels", "gaussian"}, {"codebook_rows", c.cb_rows}};
  EncodedTensor t = codebook_from_codes(p, c.rows, c.cols, codes.data(), scales.data(), levels.data());
  cu::RotateParams rot;
  if (c.rotate) {
    rot.on = true;
    rot.seed = rng()();
    rot.block = default_rotation_block(c.cols);
    t.params["rotate"] = {{"seed", rot.seed}, {"block", rot.block}};
  }
  // The reference: the codec's own decoder (with rotation: the effective, unrotated W).
  const auto views = t.views();
  auto wm = make_codec("codebook")->open(views, c.rows, c.cols, t.params);
  std::vector<float> W(static_cast<size_t>(c.rows * c.cols));
  wm->decode_rows(0, c.rows, W.data());

  cu::CodebookHost h{t.arrays.at("qweight").bytes.data(), t.arrays.at("scales").bytes.data(),
                     t.arrays.at("codebook").bytes.data(), c.rows, c.cols, c.bits, c.group, c.cb_rows, rot};
  const cu::DeviceMatrix dm = cu::DeviceMatrix::upload(h);
  const std::string what = testing::PrintToString(c.rows) + "x" + testing::PrintToString(c.cols) + " " + dm.layout() +
                           " g" + testing::PrintToString(c.group) + " cb_rows " + testing::PrintToString(c.cb_rows) +
                           (c.rotate ? " rotated" : "");
  check_products(dm, W, c.rows, c.cols, what);
}

// Random N(0, 0.05^2) weights encoded by `codec` with params p; W gets the codec's own decoding (the
// reference), rot the rotation the encoding chose (when p asks for one).
EncodedTensor encode_random(const char* codec, const CodecParams& p, int64_t rows, int64_t cols,
                            std::vector<float>& W, cu::RotateParams& rot) {
  const std::vector<float> w0 = randn(static_cast<size_t>(rows * cols), 0.05f);
  EncodedTensor t = make_codec(codec)->encode(w0.data(), rows, cols, p);
  const auto views = t.views();
  auto wm = make_codec(codec)->open(views, rows, cols, t.params);
  W.assign(static_cast<size_t>(rows * cols), 0.f);
  wm->decode_rows(0, rows, W.data());
  rot = cu::RotateParams{};
  if (t.params.contains("rotate")) {
    rot.on = true;
    rot.seed = t.params.at("rotate").at("seed").get<uint64_t>();
    rot.block = t.params.at("rotate").at("block").get<int64_t>();
  }
  return t;
}

}  // namespace

TEST(CudaGemm, CodebookEveryBitWidthRotateOnOff) {
  REQUIRE_CUDA_DEVICE();
  for (int bits = 2; bits <= 6; ++bits)
    for (bool rotate : {false, true}) {
      run_codebook({48, 512, bits, 64, 0, rotate});    // whole tiles, F = 4
      run_codebook({37, 200, bits, 32, 0, rotate});    // partial row tile and slice, F = 1
      run_codebook({70, 1000, bits, 128, 0, rotate});  // 4 slices, last partial
    }
}

// The prefill GEMM's blocks of row tiles (host only, runs without a GPU): every row tile in exactly
// one block, in order, within the scratch (at least one row tile each), as few blocks as fit and of
// sizes differing by at most one row tile.
TEST(CudaGemm, DequantPlanCoversEveryRowTileOnce) {
  std::mt19937 g(7);
  for (int it = 0; it < 2000; ++it) {
    const int64_t mtiles = 1 + g() % 300, S = 1 + g() % 90;
    const size_t bytes = size_t{8192} * (1 + g() % 3000);
    const std::vector<cu::DequantChunk> plan = cu::dequant_plan(mtiles, S, bytes);
    const int64_t per = std::max<int64_t>(1, static_cast<int64_t>(bytes / 8192) / S);
    ASSERT_EQ(static_cast<int64_t>(plan.size()), (mtiles + per - 1) / per) << mtiles << "x" << S << " " << bytes;
    int64_t next = 0, lo = mtiles, hi = 0;
    for (const cu::DequantChunk& c : plan) {
      ASSERT_EQ(c.mt0, next);
      ASSERT_GT(c.mt1, c.mt0);
      EXPECT_LE(c.mt1 - c.mt0, per);
      lo = std::min(lo, c.mt1 - c.mt0), hi = std::max(hi, c.mt1 - c.mt0);
      next = c.mt1;
    }
    EXPECT_EQ(next, mtiles);
    EXPECT_LE(hi - lo, 1);
  }
}

TEST(CudaGemm, CodebookShapesAndBlocks) {
  REQUIRE_CUDA_DEVICE();
  run_codebook({96, 768, 3, 64, 32, false});     // 3 codebook blocks of 2 row tiles
  run_codebook({300, 2304, 3, 64, 0, true});     // 9 slices: split over two column chunks (atomics)
  run_codebook({160, 5120, 4, 64, 0, false});    // 20 slices (Phi-4 width)
  run_codebook({33, 4352, 2, 16, 0, false});     // 17 slices (prime): idle warps in the last chunk
  run_codebook({40, 320, 3, 64, 24, false});     // codebook blocks splitting a tile: bf16 fallback
  run_codebook({40, 328, 3, 8, 0, true});        // group 8: bf16 fallback, rotated
  run_codebook({24, 256, 8, 64, 0, false});      // 8 bits: bf16 fallback
  run_codebook({24, 256, 1, 64, 0, false});      // 1 bit: bf16 fallback
}

TEST(CudaGemm, Int8) {
  REQUIRE_CUDA_DEVICE();
  struct Case {
    int64_t rows, cols, group;
    const char* scale_dtype;
    bool rotate;
  };
  for (const Case& c : {Case{64, 512, 128, "f16", false}, Case{37, 200, 0, "f16", false}, Case{50, 768, 32, "f32", false},
                        Case{29, 640, 64, "f32", true}, Case{33, 256, 0, "f32", true}, Case{20, 120, 24, "f16", false},
                        Case{200, 4608, 128, "f16", false}}) {
    CodecParams p = {{"group", c.group}, {"scale_dtype", c.scale_dtype}};
    if (c.rotate) p["rotate"] = true;
    std::vector<float> W;
    cu::RotateParams rot;
    const EncodedTensor t = encode_random("int8", p, c.rows, c.cols, W, rot);
    cu::Int8Host h{t.arrays.at("qweight").bytes.data(), t.arrays.at("scales").bytes.data(),
                   std::string(c.scale_dtype) == "f16", c.rows, c.cols, c.group, rot};
    const cu::DeviceMatrix dm = cu::DeviceMatrix::upload(h);
    check_products(dm, W, c.rows, c.cols, dm.layout() + " g" + std::to_string(c.group));
  }
}

// Trellis: random weights encoded by the codec (its Viterbi search), the reference its own decoder.
// Row counts that are not multiples of the rows per block (4 for one token; UPG_CUDA_TRELLIS_ROWS = 1,
// 2 or 8 runs the test with another) cover the short last block; 200 columns one warp per block,
// 5120 eight.
TEST(CudaGemm, TrellisEveryBitWidthRotateOnOff) {
  REQUIRE_CUDA_DEVICE();
  struct Case {
    int64_t rows, cols;
    int bits, state_bits, group;
    bool rotate;
  };
  std::vector<Case> cases;
  for (int bits = 1; bits <= 5; ++bits)
    for (bool rotate : {false, true}) {
      cases.push_back({48, 512, bits, 12, 512, rotate});   // one group per row (the converter's choice)
      cases.push_back({37, 200, bits, 12, 64, rotate});    // partial last step, 4 groups
      cases.push_back({70, 1000, bits, 12, 128, rotate});  // last group partial
    }
  cases.push_back({21, 100, 3, 16, 8, false});   // cols % 8 != 0 (scalar x loads), group 8, L = 16
  cases.push_back({19, 102, 2, 7, 24, false});   // cols % 4 != 0, short state
  cases.push_back({40, 5120, 3, 12, 512, true}); // Phi-4 width
  for (const Case& c : cases) {
    CodecParams p = {{"bits", c.bits}, {"state_bits", c.state_bits}, {"group", c.group}, {"passes", 1}};
    if (c.rotate) p["rotate"] = true;
    std::vector<float> W;
    cu::RotateParams rot;
    const EncodedTensor t = encode_random("trellis", p, c.rows, c.cols, W, rot);
    cu::TrellisHost h{t.arrays.at("qweight").bytes.data(), t.arrays.at("scales").bytes.data(), c.rows, c.cols, c.bits,
                      c.state_bits, c.group, rot};
    const cu::DeviceMatrix dm = cu::DeviceMatrix::upload(h);
    EXPECT_EQ(dm.layout(), "trellis" + std::to_string(c.bits) + "-rows");
    const std::string what = testing::PrintToString(c.rows) + "x" + testing::PrintToString(c.cols) + " " + dm.layout() +
                             " L" + std::to_string(c.state_bits) + " g" + std::to_string(c.group) +
                             (c.rotate ? " rotated" : "");
    check_products(dm, W, c.rows, c.cols, what);
    for (int64_t n : {2, 5}) check_matmul(dm, W, c.rows, c.cols, n, what);  // the 2- and 8-token passes
  }
}

TEST(CudaGemm, DenseBf16F16F32) {
  REQUIRE_CUDA_DEVICE();
  for (auto [rows, cols] : {std::pair<int64_t, int64_t>{64, 256}, {45, 300}, {130, 2560}}) {
    const std::vector<float> w = randn(static_cast<size_t>(rows * cols), 0.05f);
    std::vector<uint16_t> wb(w.size()), wh(w.size());
    std::vector<float> Wb(w.size()), Wh(w.size());
    for (size_t i = 0; i < w.size(); ++i) {
      wb[i] = f32_to_bf16(w[i]), Wb[i] = bf16_to_f32(wb[i]);
      wh[i] = f32_to_f16(w[i]), Wh[i] = f16_to_f32(wh[i]);
    }
    const auto b = cu::DeviceMatrix::upload(cu::DenseHost{reinterpret_cast<const uint8_t*>(wb.data()), 0, rows, cols});
    const auto h = cu::DeviceMatrix::upload(cu::DenseHost{reinterpret_cast<const uint8_t*>(wh.data()), 1, rows, cols});
    const auto f = cu::DeviceMatrix::upload(cu::DenseHost{reinterpret_cast<const uint8_t*>(w.data()), 2, rows, cols});
    check_products(b, Wb, rows, cols, "bf16");
    check_products(h, Wh, rows, cols, "f16");
    check_products(f, w, rows, cols, "f32");
  }
}

TEST(CudaOps, HadamardRotation) {
  REQUIRE_CUDA_DEVICE();
  for (auto [n, cols] : {std::pair<int64_t, int64_t>{1, 5120}, {3, 200}, {16, 4096}, {2, 17920}}) {
    const int64_t block = default_rotation_block(cols);
    const uint64_t seed = rng()();
    std::vector<float> x = randn(static_cast<size_t>(n * cols));
    const std::vector<float> s = rotation_signs(seed, cols);
    cu::DeviceBuffer dx = to_dev(x), ds = to_dev(s), dout = poisoned(x.size());
    cu::hadamard_rotate(dx.as<float>(), dout.as<float>(), n, cols, ds.as<float>(), block);
    cu::synchronize();
    const std::vector<float> got = from_dev(dout, x.size());
    for (int64_t i = 0; i < n; ++i) rotate_row(x.data() + i * cols, cols, s.data(), block);
    for (size_t i = 0; i < x.size(); ++i) ASSERT_NEAR(got[i], x[i], 1e-5f * (1 + std::fabs(x[i]))) << "cols " << cols << " i " << i;
  }
}

TEST(CudaOps, RmsNormRopeActivations) {
  REQUIRE_CUDA_DEVICE();
  // RMSNorm
  // float4 path with 1024, 96 and 768 threads, several float4 per thread (9000), the scalar path
  // (301: not a multiple of 4), and in place (out = x).
  for (auto [rows, dim] : {std::pair<int64_t, int64_t>{1, 5120}, {7, 300}, {16, 3072}, {2, 9000}, {3, 301}}) {
    const std::vector<float> x = randn(static_cast<size_t>(rows * dim), 3.f), w = randn(static_cast<size_t>(dim));
    std::vector<float> ref(x.size());
    kernels::rmsnorm(x.data(), w.data(), rows, dim, 1e-5f, ref.data());
    cu::DeviceBuffer dx = to_dev(x), dw = to_dev(w), dout = poisoned(x.size());
    cu::rmsnorm(dx.as<float>(), dw.as<float>(), rows, dim, 1e-5f, dout.as<float>());
    cu::rmsnorm(dx.as<float>(), dw.as<float>(), rows, dim, 1e-5f, dx.as<float>());
    cu::synchronize();
    const auto got = from_dev(dout, x.size()), in_place = from_dev(dx, x.size());
    for (size_t i = 0; i < x.size(); ++i) {
      ASSERT_NEAR(got[i], ref[i], 2e-5f * (1 + std::fabs(ref[i]))) << "rows " << rows << " dim " << dim << " at " << i;
      ASSERT_EQ(in_place[i], got[i]) << "in place, rows " << rows << " dim " << dim << " at " << i;
    }
  }
  // RoPE, full and partial rotary
  for (auto [rot_dim, head_dim] : {std::pair<int64_t, int64_t>{128, 128}, {64, 96}}) {
    const int64_t n_tok = 5, n_heads = 6, half = rot_dim / 2;
    std::vector<float> inv(half);
    for (int64_t j = 0; j < half; ++j) inv[j] = std::pow(10000.f, -2.f * j / rot_dim);
    std::vector<float> cs(n_tok * half), sn(n_tok * half);
    kernels::rope_cos_sin(inv.data(), half, 1.0f, 1000, n_tok, cs.data(), sn.data());
    std::vector<float> x = randn(static_cast<size_t>(n_tok * n_heads * head_dim));
    cu::DeviceBuffer dx = to_dev(x), dc = to_dev(cs), dsn = to_dev(sn);
    cu::rope(dx.as<float>(), n_tok, n_heads, head_dim, rot_dim, dc.as<float>(), dsn.as<float>());
    cu::synchronize();
    kernels::apply_rope(x.data(), n_tok, n_heads, head_dim, rot_dim, cs.data(), sn.data());
    const auto got = from_dev(dx, x.size());
    for (size_t i = 0; i < x.size(); ++i) ASSERT_NEAR(got[i], x[i], 1e-5f * (1 + std::fabs(x[i]))) << i;
  }
  // SiLU * up, GELU-tanh * up
  for (int64_t n : {1, 1000, 70001}) {
    const std::vector<float> g = randn(static_cast<size_t>(n), 4.f), u = randn(static_cast<size_t>(n));
    std::vector<float> r1(n), r2(n);
    kernels::silu_mul(g.data(), u.data(), r1.data(), n);
    kernels::gelu_tanh_mul(g.data(), u.data(), r2.data(), n);
    cu::DeviceBuffer dg = to_dev(g), du = to_dev(u), o1 = poisoned(n), o2 = poisoned(n);
    cu::silu_mul(dg.as<float>(), du.as<float>(), o1.as<float>(), n);
    cu::gelu_tanh_mul(dg.as<float>(), du.as<float>(), o2.as<float>(), n);
    cu::synchronize();
    const auto a = from_dev(o1, n), b = from_dev(o2, n);
    for (int64_t i = 0; i < n; ++i) {
      ASSERT_NEAR(a[i], r1[i], 2e-6f * (1 + std::fabs(r1[i]))) << i;
      ASSERT_NEAR(b[i], r2[i], 2e-6f * (1 + std::fabs(r2[i]))) << i;
    }
  }
}

TEST(CudaOps, Elementwise) {
  REQUIRE_CUDA_DEVICE();
  // add_bias over rows of ld > width: columns past width untouched.
  for (auto [rows, width, ld] : {std::tuple<int64_t, int64_t, int64_t>{7, 301, 320}, {1, 5, 5}, {33, 1000, 1003}}) {
    std::vector<float> y = randn(static_cast<size_t>(rows * ld)), b = randn(static_cast<size_t>(width));
    cu::DeviceBuffer dy = to_dev(y), db = to_dev(b);
    cu::add_bias(dy.as<float>(), db.as<float>(), rows, width, ld);
    cu::synchronize();
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < width; ++c) y[r * ld + c] += b[c];
    const auto got = from_dev(dy, y.size());
    for (size_t i = 0; i < y.size(); ++i) ASSERT_EQ(got[i], y[i]) << "add_bias " << rows << "x" << width << " i " << i;
  }
  // add, scale, softcap
  for (int64_t n : {1, 999, 70001}) {
    std::vector<float> x = randn(static_cast<size_t>(n), 40.f), y = randn(static_cast<size_t>(n));
    cu::DeviceBuffer dx = to_dev(x), dy = to_dev(y), ds = to_dev(x), dc = to_dev(x);
    cu::add(dx.as<float>(), dy.as<float>(), n);
    cu::scale(ds.as<float>(), n, -0.37f);
    cu::softcap(dc.as<float>(), n, 30.f);
    cu::synchronize();
    const auto sum = from_dev(dx, n), scaled = from_dev(ds, n), capped = from_dev(dc, n);
    std::vector<float> ref = x;
    kernels::softcap(ref.data(), n, 30.f);
    for (int64_t i = 0; i < n; ++i) {
      ASSERT_EQ(sum[i], x[i] + y[i]) << "add n " << n << " i " << i;
      ASSERT_EQ(scaled[i], x[i] * -0.37f) << "scale n " << n << " i " << i;
      ASSERT_NEAR(capped[i], ref[i], 1e-6f * (1 + std::fabs(ref[i]))) << "softcap n " << n << " x " << x[i];
    }
  }
  // copy_columns between different leading dimensions: columns of dst past width untouched.
  for (auto [rows, width, src_ld, dst_ld] :
       {std::tuple<int64_t, int64_t, int64_t, int64_t>{5, 77, 100, 90}, {1, 3, 3, 3}, {19, 513, 515, 1024}}) {
    const std::vector<float> src = randn(static_cast<size_t>(rows * src_ld));
    std::vector<float> dst(static_cast<size_t>(rows * dst_ld), -12345.f);
    cu::DeviceBuffer ds = to_dev(src), dd = to_dev(dst);
    cu::copy_columns(dd.as<float>(), dst_ld, ds.as<float>(), src_ld, rows, width);
    cu::synchronize();
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < width; ++c) dst[r * dst_ld + c] = src[r * src_ld + c];
    const auto got = from_dev(dd, dst.size());
    for (size_t i = 0; i < dst.size(); ++i) ASSERT_EQ(got[i], dst[i]) << "copy_columns " << rows << "x" << width << " i " << i;
  }
  // gather_rows, rows repeated and out of order
  for (auto [src_rows, n, width] : {std::tuple<int64_t, int64_t, int64_t>{40, 17, 33}, {3, 1, 1}, {500, 64, 1027}}) {
    const std::vector<float> src = randn(static_cast<size_t>(src_rows * width));
    std::vector<int32_t> idx(static_cast<size_t>(n));
    std::uniform_int_distribution<int32_t> pick(0, static_cast<int32_t>(src_rows - 1));
    for (auto& r : idx) r = pick(rng());
    idx.back() = static_cast<int32_t>(src_rows - 1);
    cu::DeviceBuffer ds = to_dev(src), di = to_dev(idx), dd = poisoned(static_cast<size_t>(n * width));
    cu::gather_rows(dd.as<float>(), ds.as<float>(), di.as<int32_t>(), n, width);
    cu::synchronize();
    const auto got = from_dev(dd, static_cast<size_t>(n * width));
    for (int64_t i = 0; i < n; ++i)
      for (int64_t c = 0; c < width; ++c)
        ASSERT_EQ(got[i * width + c], src[idx[i] * width + c]) << "gather_rows row " << i << " col " << c;
  }
  // Empty ops launch nothing (a launch of an empty grid would throw), whatever the pointers.
  cu::add_bias(nullptr, nullptr, 0, 10, 10);
  cu::add(nullptr, nullptr, 0);
  cu::scale(nullptr, 0, 2.f);
  cu::softcap(nullptr, 0, 30.f);
  cu::copy_columns(nullptr, 4, nullptr, 4, 0, 4);
  cu::gather_rows(nullptr, nullptr, nullptr, 0, 8);
  cu::kv_store_bf16(cu::PagedKv{}, 0, nullptr, 0, nullptr, 0, 4);
  cu::synchronize();
}

namespace {

// A paged bf16 cache on host and device: each sequence's blocks allocated one by one (one
// DeviceBuffer each) in a shuffled order, as the runtime's allocator hands them out, mirrored on the
// host (KvLayerView) for the CPU reference; plus the device table of block pointers, one row per entry.
struct PagedCache {
  int64_t n_kv, head_dim, block_size, max_blocks;
  size_t row_bytes, head_stride, kv_offset, layer_offset, block_bytes;
  std::vector<int64_t> seq_len;                          // [sequence] positions
  std::vector<std::vector<std::vector<uint8_t>>> host;  // [sequence][block] bytes
  std::vector<std::vector<uint8_t*>> host_ptrs;         // [sequence][block]
  std::vector<std::vector<cu::DeviceBuffer>> dev;       // [sequence][block]
  cu::DeviceBuffer table;
  std::vector<const uint8_t*> table_host;  // the last paged() table

  // seq_len[s]: positions of sequence s; fill: the bytes of every block before anything is stored.
  PagedCache(int64_t n_kv_, int64_t head_dim_, int64_t block_size_, const std::vector<int64_t>& seq_len_, uint8_t fill)
      : n_kv(n_kv_), head_dim(head_dim_), block_size(block_size_), seq_len(seq_len_) {
    const int64_t layers = 3, layer = 1;
    row_bytes = kv_row_bytes(KvType::BF16, head_dim);
    head_stride = block_size * row_bytes, kv_offset = n_kv * head_stride;
    layer_offset = layer * 2 * kv_offset, block_bytes = layers * 2 * kv_offset;
    const size_t nseq = seq_len.size();
    host.resize(nseq), host_ptrs.resize(nseq), dev.resize(nseq);
    std::vector<std::pair<size_t, size_t>> order;  // (sequence, block)
    max_blocks = 1;
    for (size_t s = 0; s < nseq; ++s) {
      const int64_t nb = (seq_len[s] + block_size - 1) / block_size;
      max_blocks = std::max(max_blocks, nb + 1);  // a spare column: the table's stride is not the count
      host[s].assign(static_cast<size_t>(nb), std::vector<uint8_t>(block_bytes, fill));
      dev[s].resize(static_cast<size_t>(nb));
      for (size_t i = 0; i < host[s].size(); ++i) host_ptrs[s].push_back(host[s][i].data()), order.emplace_back(s, i);
    }
    std::shuffle(order.begin(), order.end(), rng());
    for (auto [s, i] : order) dev[s][i] = cu::DeviceBuffer(block_bytes);
  }
  KvLayerView view(size_t s) {
    return KvLayerView{KvType::BF16, block_size, head_dim, row_bytes, head_stride, kv_offset, layer_offset,
                       host_ptrs[s].data()};
  }
  void upload() {
    for (size_t s = 0; s < host.size(); ++s)
      for (size_t i = 0; i < host[s].size(); ++i) dev[s][i].upload(host[s][i].data(), block_bytes);
  }
  // The table for entries of sequences seq_of[t]: row t = that sequence's device blocks, null padded.
  cu::PagedKv paged(const std::vector<int>& seq_of) {
    std::vector<const uint8_t*> t(seq_of.size() * static_cast<size_t>(max_blocks), nullptr);
    for (size_t e = 0; e < seq_of.size(); ++e)
      for (size_t i = 0; i < dev[seq_of[e]].size(); ++i)
        t[e * max_blocks + i] = dev[seq_of[e]][i].as<const uint8_t>();
    table = to_dev(t);
    table_host = t;
    return cu::PagedKv{table.as<const uint8_t* const>(), max_blocks, block_size, head_dim,
                       row_bytes, head_stride, kv_offset, layer_offset};
  }
};

std::vector<int64_t> sequence_lengths(const std::vector<int32_t>& pos, const std::vector<int>& seq_of) {
  std::vector<int64_t> len(static_cast<size_t>(*std::max_element(seq_of.begin(), seq_of.end()) + 1), 0);
  for (size_t e = 0; e < pos.size(); ++e) len[seq_of[e]] = std::max<int64_t>(len[seq_of[e]], pos[e] + 1);
  return len;
}

struct AttnCase {
  int64_t n_heads, n_kv, head_dim, block_size, window;
  float softcap;
  std::vector<int32_t> pos;  // one per entry (query token)
  std::vector<int> seq = {};  // the entries' sequences; empty: entry e is sequence e
};

void run_attention(const AttnCase& c) {
  const int64_t nent = static_cast<int64_t>(c.pos.size());
  std::vector<int> seq_of = c.seq;
  if (seq_of.empty()) {
    seq_of.resize(c.pos.size());
    std::iota(seq_of.begin(), seq_of.end(), 0);
  }
  // bf16 NaN (0xffff) wherever no row was written (past each sequence's last position).
  PagedCache cache(c.n_kv, c.head_dim, c.block_size, sequence_lengths(c.pos, seq_of), 0xff);
  std::vector<float> row(c.head_dim);
  for (size_t s = 0; s < cache.host.size(); ++s) {
    const KvLayerView v = cache.view(s);
    for (int64_t p = 0; p < cache.seq_len[s]; ++p)
      for (int part = 0; part < 2; ++part)
        for (int64_t h = 0; h < c.n_kv; ++h) {
          row = randn(static_cast<size_t>(c.head_dim));
          kernels::kv_store_row(KvType::BF16, row.data(), c.head_dim, v.row(part, h, p));
        }
  }
  cache.upload();
  const int32_t max_pos = *std::max_element(c.pos.begin(), c.pos.end());
  const std::vector<float> q = randn(static_cast<size_t>(nent * c.n_heads * c.head_dim));
  kernels::AttentionShape shape{c.n_heads, c.n_kv, c.head_dim, c.window, 1.0f / std::sqrt(float(c.head_dim)), c.softcap};
  std::vector<float> ref(q.size()), scores(max_pos + 1), tmp(c.head_dim);
  for (int64_t e = 0; e < nent; ++e) {
    const KvLayerView v = cache.view(seq_of[e]);
    for (int64_t h = 0; h < c.n_heads; ++h)
      kernels::attention_head(shape, v, h / (c.n_heads / c.n_kv), q.data() + (e * c.n_heads + h) * c.head_dim,
                              c.pos[e], scores.data(), tmp.data(), ref.data() + (e * c.n_heads + h) * c.head_dim);
  }
  const cu::PagedKv kv = cache.paged(seq_of);
  cu::DeviceBuffer dq = to_dev(q), dpos = to_dev(c.pos), dout = poisoned(q.size());
  cu::AttentionParams ap{c.n_heads, c.n_kv, c.head_dim, c.window, shape.scale, c.softcap};
  cu::DeviceBuffer ws(cu::decode_attention_workspace(ap, nent, max_pos));
  cu::decode_attention(ap, kv, dq.as<float>(), dpos.as<int32_t>(), nent, max_pos, dout.as<float>(), ws.data());
  cu::synchronize();
  const auto got = from_dev(dout, q.size());
  for (size_t i = 0; i < got.size(); ++i)
    ASSERT_NEAR(got[i], ref[i], 2e-4f) << "heads " << c.n_heads << "/" << c.n_kv << " hd " << c.head_dim << " entry "
                                       << i / (c.n_heads * c.head_dim) << " i " << i;

  // The tensor-core prompt kernel on the same entries (Q and the softmax weights as bf16 hi + lo
  // pairs): the decode kernel's tolerance, and a mean error at the level of fp32 rounding.
  if (!cu::prompt_attention_supported(ap, kv)) {
    EXPECT_TRUE(c.head_dim > 128 || c.head_dim % 16 != 0) << "head_dim " << c.head_dim << " should be supported";
    return;
  }
  const std::vector<int32_t> tiles = cu::prompt_attention_tiles(cache.table_host.data(), nent, cache.max_blocks);
  ASSERT_FALSE(tiles.empty());
  int64_t covered = 0;
  for (size_t i = 0; i < tiles.size(); i += 2) {
    ASSERT_EQ(tiles[i], covered);
    ASSERT_TRUE(tiles[i + 1] >= 1 && tiles[i + 1] <= cu::kPromptTileTokens);
    for (int32_t e = tiles[i]; e < tiles[i] + tiles[i + 1]; ++e) ASSERT_EQ(seq_of[e], seq_of[tiles[i]]);
    covered += tiles[i + 1];
  }
  ASSERT_EQ(covered, nent);
  const int64_t ntiles = static_cast<int64_t>(tiles.size() / 2);
  cu::DeviceBuffer dtiles = to_dev(tiles), pout = poisoned(q.size());
  cu::prompt_attention(ap, kv, dq.as<float>(), dpos.as<int32_t>(), dtiles.as<int32_t>(), ntiles, nent, max_pos,
                       pout.as<float>(), ws.data());
  cu::synchronize();
  const auto pgot = from_dev(pout, q.size());
  double sum_err = 0;
  for (size_t i = 0; i < pgot.size(); ++i) {
    ASSERT_NEAR(pgot[i], ref[i], 2e-4f) << "prompt kernel: heads " << c.n_heads << "/" << c.n_kv << " hd "
                                        << c.head_dim << " entry " << i / (c.n_heads * c.head_dim) << " i " << i
                                        << " splits " << cu::prompt_attention_splits(ap, ntiles, max_pos);
    sum_err += std::fabs(pgot[i] - ref[i]);
  }
  EXPECT_LT(sum_err / static_cast<double>(pgot.size()), 2e-5) << "prompt kernel: mean error, hd " << c.head_dim;
}

}  // namespace

namespace {

// Multi-head latent attention: one latent row per position (keys part only), values its first r
// columns; against kernels::attention_head with AttentionShape::value_dim.
void run_latent_attention(int64_t n_heads, int64_t r, int64_t rope, int64_t block_size, int64_t window, float softcap,
                          const std::vector<int32_t>& pos) {
  const int64_t row = r + rope, nent = static_cast<int64_t>(pos.size());
  std::vector<int> seq_of(pos.size());
  std::iota(seq_of.begin(), seq_of.end(), 0);
  PagedCache cache(1, row, block_size, sequence_lengths(pos, seq_of), 0xff);
  for (size_t s = 0; s < cache.host.size(); ++s) {
    const KvLayerView v = cache.view(s);
    for (int64_t p = 0; p < cache.seq_len[s]; ++p) {
      const std::vector<float> x = randn(static_cast<size_t>(row));
      kernels::kv_store_row(KvType::BF16, x.data(), row, v.row(0, 0, p));
    }
  }
  cache.upload();
  const int32_t max_pos = *std::max_element(pos.begin(), pos.end());
  const std::vector<float> q = randn(static_cast<size_t>(nent * n_heads * row), 0.3f);
  const float scale = 1.0f / std::sqrt(static_cast<float>(row));
  const kernels::AttentionShape shape{n_heads, 1, row, window, scale, softcap, r};
  std::vector<float> ref(static_cast<size_t>(nent * n_heads * r)), scores(max_pos + 1), tmp(row);
  for (int64_t e = 0; e < nent; ++e)
    for (int64_t h = 0; h < n_heads; ++h)
      kernels::attention_head(shape, cache.view(seq_of[e]), 0, q.data() + (e * n_heads + h) * row, pos[e],
                              scores.data(), tmp.data(), ref.data() + (e * n_heads + h) * r);
  const cu::PagedKv kv = cache.paged(seq_of);
  cu::DeviceBuffer dq = to_dev(q), dpos = to_dev(pos), dout = poisoned(ref.size());
  const cu::AttentionParams ap{n_heads, 1, row, window, scale, softcap};
  cu::latent_attention(ap, r, kv, dq.as<float>(), dpos.as<int32_t>(), nent, dout.as<float>());
  cu::synchronize();
  const auto got = from_dev(dout, ref.size());
  for (size_t i = 0; i < got.size(); ++i)
    ASSERT_NEAR(got[i], ref[i], 2e-4f) << "latent attention: heads " << n_heads << " r " << r << " rope " << rope
                                       << " entry " << i / (n_heads * r) << " i " << i;
}

}  // namespace

// DeepSeek V3's shape (r 512, rope 64), a small one (value columns 16, partial lanes), a window
// with soft-capping; long and short positions.
TEST(CudaAttention, LatentRowsOfMultiHeadLatentAttention) {
  REQUIRE_CUDA_DEVICE();
  run_latent_attention(16, 512, 64, 16, 0, 0.f, {0, 37, 700});
  run_latent_attention(4, 16, 8, 16, 0, 0.f, {5, 200, 1});
  run_latent_attention(3, 100, 32, 32, 60, 20.f, {300, 59, 2});
  test::expect_error([] { cu::latent_attention({4, 2, 64, 0, 1.f, 0.f}, 32, cu::PagedKv{}, nullptr, nullptr, 1, nullptr); },
                     "latent_attention");
}

// The mixture-of-experts and latent-attention ops against the CPU backend's arithmetic.
TEST(CudaOps, WeightedRowsFillDeinterleaveHeadProducts) {
  REQUIRE_CUDA_DEVICE();
  // add_weighted_rows: rows distinct, out of order.
  for (auto [dst_rows, n, width] : {std::tuple<int64_t, int64_t, int64_t>{40, 17, 33}, {3, 1, 1}, {300, 64, 1027}}) {
    std::vector<float> dst = randn(static_cast<size_t>(dst_rows * width));
    const std::vector<float> src = randn(static_cast<size_t>(n * width)), w = randn(static_cast<size_t>(n));
    std::vector<int32_t> idx(static_cast<size_t>(dst_rows));
    std::iota(idx.begin(), idx.end(), 0);
    std::shuffle(idx.begin(), idx.end(), rng());
    idx.resize(static_cast<size_t>(n));
    cu::DeviceBuffer dd = to_dev(dst), ds = to_dev(src), di = to_dev(idx), dw = to_dev(w);
    cu::add_weighted_rows(dd.as<float>(), ds.as<float>(), di.as<int32_t>(), dw.as<float>(), n, width);
    cu::synchronize();
    for (int64_t i = 0; i < n; ++i)
      for (int64_t c = 0; c < width; ++c) dst[idx[i] * width + c] += src[i * width + c] * w[i];
    const auto got = from_dev(dd, dst.size());
    for (size_t i = 0; i < dst.size(); ++i)
      ASSERT_NEAR(got[i], dst[i], 1e-6f * (1 + std::fabs(dst[i]))) << "add_weighted_rows " << n << "x" << width << " i " << i;
  }
  // fill
  for (int64_t n : {1, 999, 70001}) {
    cu::DeviceBuffer d = poisoned(static_cast<size_t>(n));
    cu::fill(d.as<float>(), n, -2.5f);
    cu::synchronize();
    const auto got = from_dev(d, static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(got[i], -2.5f) << "fill n " << n << " i " << i;
  }
  // deinterleave_pairs: segments of width inside rows of ld, the rest untouched.
  for (auto [segments, ld, off, width] :
       {std::tuple<int64_t, int64_t, int64_t, int64_t>{9, 192, 128, 64}, {1, 8, 0, 8}, {1000, 70, 4, 66}}) {
    std::vector<float> x = randn(static_cast<size_t>(segments * ld));
    cu::DeviceBuffer dx = to_dev(x);
    cu::deinterleave_pairs(dx.as<float>() + off, segments, ld, width);
    cu::synchronize();
    for (int64_t s = 0; s < segments; ++s) {
      std::vector<float> v(x.begin() + s * ld + off, x.begin() + s * ld + off + width);
      for (int64_t j = 0; j < width / 2; ++j) x[s * ld + off + j] = v[2 * j], x[s * ld + off + width / 2 + j] = v[2 * j + 1];
    }
    const auto got = from_dev(dx, x.size());
    for (size_t i = 0; i < x.size(); ++i) ASSERT_EQ(got[i], x[i]) << "deinterleave_pairs width " << width << " i " << i;
  }
  // head_products, both directions, strided inputs and outputs.
  for (auto [n, heads, rows, cols] :
       {std::tuple<int64_t, int64_t, int64_t, int64_t>{3, 16, 128, 512}, {1, 1, 1, 1}, {5, 7, 33, 70}}) {
    const std::vector<float> w = randn(static_cast<size_t>(heads * rows * cols));
    for (bool tr : {true, false}) {
      const int64_t in = tr ? rows : cols, out = tr ? cols : rows, x_ld = in + 3, y_ld = out + 5;
      const std::vector<float> x = randn(static_cast<size_t>(n * heads * x_ld));
      std::vector<float> ref(static_cast<size_t>(n * heads * y_ld), -7.f);
      std::vector<double> mag(ref.size(), 0.0);
      for (int64_t th = 0; th < n * heads; ++th) {
        const float* W = w.data() + (th % heads) * rows * cols;
        for (int64_t o = 0; o < out; ++o) {
          double s = 0, m = 0;
          for (int64_t i = 0; i < in; ++i) {
            const double t = static_cast<double>(x[th * x_ld + i]) * (tr ? W[i * cols + o] : W[o * cols + i]);
            s += t, m += std::fabs(t);
          }
          ref[th * y_ld + o] = static_cast<float>(s), mag[th * y_ld + o] = m;
        }
      }
      cu::DeviceBuffer dw = to_dev(w), dx = to_dev(x), dy = to_dev(ref);
      cu::head_products(dw.as<float>(), tr, heads, rows, cols, dx.as<float>(), x_ld, n, dy.as<float>(), y_ld);
      cu::synchronize();
      const auto got = from_dev(dy, ref.size());
      for (size_t i = 0; i < ref.size(); ++i)
        ASSERT_NEAR(got[i], ref[i], 1e-5 * (1 + mag[i])) << "head_products " << (tr ? "W^T x" : "W x") << " " << heads
                                                       << "x" << rows << "x" << cols << " i " << i;
    }
  }
}

TEST(CudaAttention, DecodePagedBf16) {
  REQUIRE_CUDA_DEVICE();
  run_attention({8, 2, 128, 16, 0, 0.f, {0, 5, 300}});           // GQA 4, one split
  run_attention({40, 10, 128, 16, 0, 0.f, {1100, 17, 2047}});    // Phi-4 heads, split over positions
  run_attention({8, 1, 64, 32, 0, 0.f, {700, 63}});              // group 8
  run_attention({6, 6, 96, 16, 0, 0.f, {520, 3}});               // no GQA, head_dim 96 (partial lanes)
  run_attention({4, 2, 256, 16, 100, 30.f, {900, 50}});          // window + soft-cap, head_dim 256
}

TEST(CudaAttention, DecodeEntriesSharingASequence) {
  REQUIRE_CUDA_DEVICE();
  // Prefill-like: several query tokens of one sequence, each attending causally up to its own pos,
  // beside a decode token of another sequence.
  run_attention({8, 2, 128, 16, 0, 0.f, {0, 1, 15, 16, 17, 290, 300, 7}, {0, 0, 0, 0, 0, 0, 0, 1}});
  // Split over positions (max_pos 2047), entries of one sequence in every split count.
  run_attention({40, 10, 128, 16, 0, 0.f, {2047, 1000, 5, 2046, 900, 1}, {0, 0, 0, 0, 1, 1}});
  // Sliding window + soft-cap, sequences interleaved in the batch.
  run_attention({4, 2, 256, 16, 100, 30.f, {850, 40, 900, 99, 100}, {0, 1, 0, 1, 1}});
}

TEST(CudaAttention, PromptTilesOfLongRuns) {
  REQUIRE_CUDA_DEVICE();
  // A 300-token prompt (19 tiles, the last partial) beside a decode token; Phi-4 heads.
  std::vector<int32_t> pos;
  std::vector<int> seq;
  for (int32_t p = 0; p < 300; ++p) pos.push_back(p), seq.push_back(0);
  pos.push_back(40), seq.push_back(1);
  run_attention({40, 10, 128, 16, 0, 0.f, pos, seq});
  // A chunk of 20 tokens continuing a 3000-token context (split over the positions), group 8, hd 64.
  pos.clear(), seq.clear();
  for (int32_t p = 3000; p < 3020; ++p) pos.push_back(p), seq.push_back(0);
  run_attention({16, 2, 64, 32, 0, 0.f, pos, seq});
  // Window + soft-cap, hd 96 without GQA, two prompts interleaved in runs of 5, positions out of order.
  pos.clear(), seq.clear();
  for (int32_t i = 0; i < 60; ++i) pos.push_back(i % 5 == 3 ? 200 - i : 300 + i), seq.push_back((i / 5) % 2);
  run_attention({6, 6, 96, 16, 50, 30.f, pos, seq});
  // Block size 1, head_dim 16, group 1: the smallest shapes.
  pos.clear(), seq.clear();
  for (int32_t p = 0; p < 37; ++p) pos.push_back(p), seq.push_back(0);
  run_attention({3, 3, 16, 1, 0, 0.f, pos, seq});
}

TEST(CudaKv, StoreBf16MatchesCpuByteForByte) {
  REQUIRE_CUDA_DEVICE();
  for (int64_t head_dim : {128, 5}) {
    const int64_t n_kv = 3, block_size = 16;
    // Entries: tokens of two sequences, positions distinct within a sequence (across block boundaries).
    const std::vector<int32_t> pos = {0, 1, 15, 16, 47, 3, 31, 32, 2};
    const std::vector<int> seq_of = {0, 0, 0, 0, 0, 1, 1, 1, 1};
    const int64_t n = static_cast<int64_t>(pos.size()), ld = n_kv * head_dim + 7;
    PagedCache cache(n_kv, head_dim, block_size, sequence_lengths(pos, seq_of), 0xa5);
    cache.upload();
    const cu::PagedKv kv = cache.paged(seq_of);
    cu::DeviceBuffer dpos = to_dev(pos);
    for (int kv_index : {0, 1}) {
      std::vector<float> x = randn(static_cast<size_t>(n * ld), 3.f);
      // Values whose rounding matters: NaNs (signs, payloads, signalling), infinities, overflow to
      // infinity, subnormals, signed zeros, exact ties (to even, both ways) and values just off them.
      const uint32_t special[] = {0x7fc00000u, 0xffc00000u, 0x7f800001u, 0xff812345u, 0x7fbfffffu, 0x7f800000u,
                                  0xff800000u, 0x7f7fffffu, 0xff7f8000u, 0x7f7f7fffu, 0x00000001u, 0x80008000u,
                                  0x007fffffu, 0x00000000u, 0x80000000u, 0x3f808000u, 0x3f818000u, 0x3f808001u,
                                  0xbf817fffu, 0x3f800000u, 0xc0490fdbu};
      for (size_t i = 0; i < std::size(special); ++i) {
        float f;
        std::memcpy(&f, &special[i], 4);
        x[(i % static_cast<size_t>(n)) * ld + (i / static_cast<size_t>(n)) + (kv_index ? 2 : 0)] = f;
      }
      cu::DeviceBuffer dx = to_dev(x);
      cu::kv_store_bf16(kv, kv_index, dx.as<float>(), ld, dpos.as<int32_t>(), n, n_kv);
      for (int64_t t = 0; t < n; ++t) {
        const KvLayerView v = cache.view(seq_of[t]);
        for (int64_t g = 0; g < n_kv; ++g)
          kernels::kv_store_row(KvType::BF16, x.data() + t * ld + g * head_dim, head_dim, v.row(kv_index, g, pos[t]));
      }
    }
    cu::synchronize();
    for (size_t s = 0; s < cache.host.size(); ++s)
      for (size_t b = 0; b < cache.host[s].size(); ++b) {
        std::vector<uint8_t> got(cache.block_bytes);
        cache.dev[s][b].download(got.data(), got.size());
        const auto& want = cache.host[s][b];
        const auto diff = std::mismatch(got.begin(), got.end(), want.begin());
        ASSERT_TRUE(diff.first == got.end())
            << "head_dim " << head_dim << " sequence " << s << " block " << b << " byte " << diff.first - got.begin()
            << ": got 0x" << std::hex << int(*diff.first) << ", want 0x" << int(*diff.second);
      }
  }
}

// The fused attention inputs (q roped out, k roped and v stored in bf16) against the CPU's rope and
// kv_store_row: q within fp32 rounding, the cache's bf16 values within one bf16 step (the roped k
// may round differently in its last fp32 bit), untouched bytes unchanged.
TEST(CudaKv, AttentionInputMatchesRopeAndStore) {
  REQUIRE_CUDA_DEVICE();
  for (auto [head_dim, rotary] : {std::pair<int64_t, int64_t>{128, 128}, {64, 32}, {6, 4}}) {
    const int64_t n_kv = 2, nh = 4, block_size = 16, half = rotary / 2;
    const std::vector<int32_t> pos = {0, 1, 15, 16, 33, 3, 17};
    const std::vector<int> seq_of = {0, 0, 0, 0, 0, 1, 1};
    const int64_t n = static_cast<int64_t>(pos.size()), ld = (nh + 2 * n_kv) * head_dim + 3;
    PagedCache cache(n_kv, head_dim, block_size, sequence_lengths(pos, seq_of), 0x5a);
    cache.upload();
    const cu::PagedKv kv = cache.paged(seq_of);
    const std::vector<float> qkv = randn(static_cast<size_t>(n * ld), 2.f);
    const std::vector<float> cs = randn(static_cast<size_t>(n * half)), sn = randn(static_cast<size_t>(n * half));
    cu::DeviceBuffer dqkv = to_dev(qkv), dpos = to_dev(pos), dcs = to_dev(cs), dsn = to_dev(sn);
    cu::DeviceBuffer dq = poisoned(static_cast<size_t>(n * nh * head_dim));
    cu::attention_input(kv, dqkv.as<float>(), ld, dpos.as<int32_t>(), n, nh, n_kv, head_dim, rotary, dcs.as<float>(),
                        dsn.as<float>(), dq.as<float>());
    // The CPU: copy, rope, store.
    std::vector<float> q(static_cast<size_t>(n * nh * head_dim)), k(static_cast<size_t>(n * n_kv * head_dim));
    for (int64_t t = 0; t < n; ++t) {
      std::memcpy(q.data() + t * nh * head_dim, qkv.data() + t * ld, sizeof(float) * nh * head_dim);
      std::memcpy(k.data() + t * n_kv * head_dim, qkv.data() + t * ld + nh * head_dim, sizeof(float) * n_kv * head_dim);
    }
    kernels::apply_rope(q.data(), n, nh, head_dim, rotary, cs.data(), sn.data());
    kernels::apply_rope(k.data(), n, n_kv, head_dim, rotary, cs.data(), sn.data());
    for (int64_t t = 0; t < n; ++t) {
      const KvLayerView v = cache.view(seq_of[t]);
      for (int64_t g = 0; g < n_kv; ++g) {
        kernels::kv_store_row(KvType::BF16, k.data() + (t * n_kv + g) * head_dim, head_dim, v.row(0, g, pos[t]));
        kernels::kv_store_row(KvType::BF16, qkv.data() + t * ld + (nh + n_kv + g) * head_dim, head_dim,
                              v.row(1, g, pos[t]));
      }
    }
    cu::synchronize();
    const std::vector<float> got_q = from_dev(dq, q.size());
    for (size_t i = 0; i < q.size(); ++i)
      ASSERT_NEAR(got_q[i], q[i], 1e-5 * (1 + std::fabs(q[i]))) << "head_dim " << head_dim << " q[" << i << "]";
    for (size_t s = 0; s < cache.host.size(); ++s)
      for (size_t b = 0; b < cache.host[s].size(); ++b) {
        std::vector<uint16_t> got(cache.block_bytes / 2), want(cache.block_bytes / 2);
        cache.dev[s][b].download(got.data(), cache.block_bytes);
        std::memcpy(want.data(), cache.host[s][b].data(), cache.block_bytes);
        for (size_t i = 0; i < got.size(); ++i) {
          if (got[i] == want[i]) continue;
          const float a = bf16_to_f32(got[i]), w = bf16_to_f32(want[i]);
          ASSERT_LE(std::fabs(a - w), std::ldexp(std::fabs(w), -7)) << "head_dim " << head_dim << " sequence " << s
                                                                     << " block " << b << " value " << i;
        }
      }
  }
}

TEST(CudaOps, GatedRowsEveryActivation) {
  REQUIRE_CUDA_DEVICE();
  // Rows [gate | up] as the engine's MLP holds them, against the CPU backend's loop over rows.
  for (upg::Activation act : {upg::Activation::Silu, upg::Activation::GeluTanh, upg::Activation::Gelu})
    for (auto [n, width] : {std::pair<int64_t, int64_t>{1, 96}, {5, 1000}, {17, 1537}}) {
      const std::vector<float> gu = randn(static_cast<size_t>(n * 2 * width), 3.f);
      std::vector<float> ref(static_cast<size_t>(n * width));
      for (int64_t t = 0; t < n; ++t) {
        const float* g = gu.data() + t * 2 * width;
        float* o = ref.data() + t * width;
        if (act == upg::Activation::Silu) kernels::silu_mul(g, g + width, o, width);
        else if (act == upg::Activation::GeluTanh) kernels::gelu_tanh_mul(g, g + width, o, width);
        else kernels::gelu_mul(g, g + width, o, width);
      }
      cu::DeviceBuffer dgu = to_dev(gu), dout = poisoned(ref.size());
      cu::gated_rows(act, dgu.as<float>(), n, width, dout.as<float>());
      cu::synchronize();
      const auto got = from_dev(dout, ref.size());
      for (size_t i = 0; i < ref.size(); ++i)
        ASSERT_NEAR(got[i], ref[i], 2e-6f * (1 + std::fabs(ref[i]))) << "act " << static_cast<int>(act) << " n " << n
                                                                      << " width " << width << " i " << i;
    }
}

// The ops that rotate the next matmul's input in their own pass (rmsnorm_rotate, gated_rows_rotate)
// against the two kernels they replace (rmsnorm or gated_rows, then hadamard_rotate): the same bits
// in out and in the rotated copy; refused (false, nothing written) where they do not apply.
bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

TEST(CudaOps, NormAndActivationRotateInTheirOwnPass) {
  REQUIRE_CUDA_DEVICE();
  for (auto [rows, dim, block] : {std::tuple<int64_t, int64_t, int64_t>{1, 5120, 1024}, {16, 3072, 1024},
                                  {3, 4096, 4096}, {2, 9000, 8}, {5, 512, 64}, {7, 128, 4}}) {
    const std::vector<float> x = randn(static_cast<size_t>(rows * dim), 3.f), w = randn(static_cast<size_t>(dim));
    const std::vector<float> s = rotation_signs(rng()(), dim);
    cu::DeviceBuffer dx = to_dev(x), dw = to_dev(w), ds = to_dev(s);
    cu::DeviceBuffer ref = poisoned(x.size()), ref_rot = poisoned(x.size()), out = poisoned(x.size()),
                     rot = poisoned(x.size());
    cu::rmsnorm(dx.as<float>(), dw.as<float>(), rows, dim, 1e-5f, ref.as<float>());
    cu::hadamard_rotate(ref.as<float>(), ref_rot.as<float>(), rows, dim, ds.as<float>(), block);
    ASSERT_TRUE(cu::rmsnorm_rotate(dx.as<float>(), dw.as<float>(), rows, dim, 1e-5f, out.as<float>(), ds.as<float>(),
                                   block, rot.as<float>()));
    cu::synchronize();
    EXPECT_TRUE(same_bits(from_dev(out, x.size()), from_dev(ref, x.size()))) << rows << " x " << dim << " block " << block;
    EXPECT_TRUE(same_bits(from_dev(rot, x.size()), from_dev(ref_rot, x.size())))
        << "rotated, " << rows << " x " << dim << " block " << block;
  }
  {  // not for it: a row length not a multiple of 4, out == x, a block that does not divide the row
    const std::vector<float> x = randn(3 * 301), w = randn(301), s = rotation_signs(1, 1024);
    cu::DeviceBuffer dx = to_dev(x), dw = to_dev(w), ds = to_dev(s), o = poisoned(3 * 1024);
    EXPECT_FALSE(cu::rmsnorm_rotate(dx.as<float>(), dw.as<float>(), 3, 301, 1e-5f, o.as<float>(), ds.as<float>(), 1,
                                    o.as<float>()));
    EXPECT_FALSE(cu::rmsnorm_rotate(dx.as<float>(), dw.as<float>(), 1, 256, 1e-5f, dx.as<float>(), ds.as<float>(), 256,
                                    o.as<float>()));
    EXPECT_FALSE(cu::rmsnorm_rotate(dx.as<float>(), dw.as<float>(), 1, 96, 1e-5f, o.as<float>(), ds.as<float>(), 64,
                                    o.as<float>()));
  }
  for (upg::Activation act : {upg::Activation::Silu, upg::Activation::GeluTanh, upg::Activation::Gelu})
    for (auto [n, width, block] : {std::tuple<int64_t, int64_t, int64_t>{1, 17920, 512}, {16, 1536, 512},
                                   {5, 1000, 8}, {2, 4096, 4096}, {3, 96, 1}}) {
      const std::vector<float> gu = randn(static_cast<size_t>(n * 2 * width), 3.f);
      const std::vector<float> s = rotation_signs(rng()(), width);
      const size_t count = static_cast<size_t>(n * width);
      cu::DeviceBuffer dgu = to_dev(gu), ds = to_dev(s), ref = poisoned(count), ref_rot = poisoned(count),
                       out = poisoned(count), rot = poisoned(count);
      cu::gated_rows(act, dgu.as<float>(), n, width, ref.as<float>());
      cu::hadamard_rotate(ref.as<float>(), ref_rot.as<float>(), n, width, ds.as<float>(), block);
      ASSERT_TRUE(cu::gated_rows_rotate(act, dgu.as<float>(), n, width, out.as<float>(), ds.as<float>(), block,
                                        rot.as<float>()));
      cu::synchronize();
      const std::string what = "act " + std::to_string(static_cast<int>(act)) + ", " + std::to_string(n) + " x " +
                               std::to_string(width) + " block " + std::to_string(block);
      EXPECT_TRUE(same_bits(from_dev(out, count), from_dev(ref, count))) << what;
      EXPECT_TRUE(same_bits(from_dev(rot, count), from_dev(ref_rot, count))) << "rotated, " << what;
      // out over gate_up: refused
      EXPECT_FALSE(cu::gated_rows_rotate(act, dgu.as<float>(), n, width, dgu.as<float>() + width, ds.as<float>(),
                                         block, rot.as<float>()));
    }
}

// A rotated matrix told that its input was rotated in another op's pass (input_rotated) multiplies
// that copy once, and rotates x itself again on the next product.
TEST(CudaGemm, ProductOfAnInputRotatedElsewhere) {
  REQUIRE_CUDA_DEVICE();
  const int64_t rows = 96, cols = 1024, n = 3;
  std::vector<float> W;
  cu::RotateParams rot;
  EncodedTensor t = encode_random("codebook", {{"bits", 4}, {"group", 64}, {"levels", "gaussian"}, {"rotate", true}},
                                  rows, cols, W, rot);
  ASSERT_TRUE(rot.on);
  const cu::DeviceMatrix dm = cu::DeviceMatrix::upload(
      cu::CodebookHost{t.arrays.at("qweight").bytes.data(), t.arrays.at("scales").bytes.data(),
                       t.arrays.at("codebook").bytes.data(), rows, cols, 4, 64, 0, rot});
  const cu::DeviceMatrix::InputRotation r = dm.input_rotation();
  ASSERT_NE(r.signs, nullptr);
  ASSERT_EQ(r.block, rot.block);
  const std::vector<float> x = randn(static_cast<size_t>(n * cols)), w = randn(static_cast<size_t>(cols));
  cu::DeviceBuffer dx = to_dev(x), dw = to_dev(w), h = poisoned(x.size()), y_ref = poisoned(n * rows),
                   y = poisoned(n * rows), y_again = poisoned(n * rows);
  cu::rmsnorm(dx.as<float>(), dw.as<float>(), n, cols, 1e-5f, h.as<float>());
  dm.matmul(h.as<float>(), n, y_ref.as<float>());
  ASSERT_TRUE(cu::rmsnorm_rotate(dx.as<float>(), dw.as<float>(), n, cols, 1e-5f, h.as<float>(), r.signs, r.block, r.xrot));
  dm.input_rotated(h.as<float>(), n);
  dm.matmul(h.as<float>(), n, y.as<float>());
  // The mark is spent: scribble over the scratch, then the next product rotates h itself.
  cu::fill(r.xrot, n * cols, 1e30f);
  dm.matmul(h.as<float>(), n, y_again.as<float>());
  cu::synchronize();
  const auto want = from_dev(y_ref, n * rows);
  for (const auto* got : {&y, &y_again}) {
    const auto g = from_dev(*got, n * rows);
    for (size_t i = 0; i < want.size(); ++i) ASSERT_NEAR(g[i], want[i], 1e-4f * (1 + std::fabs(want[i]))) << i;
  }
  EXPECT_THROW(dm.input_rotated(h.as<float>(), 17), Error);
}

// Sampling's kernels against kernels/cpu/logit_select.cpp: the penalties bit for bit, then the same
// candidates (ids and values, in order, ties broken by the lowest id, also where ties straddle the
// k-th place), the normaliser to rounding, on rows of real vocabulary sizes and a subset of rows.
TEST(CudaSampling, PenaltiesAndTopLogitsEqualTheReference) {
  REQUIRE_CUDA_DEVICE();
  std::mt19937 g(3);
  for (auto [rows, V, k] : {std::tuple<int64_t, int64_t, int>{1, 152064, 1}, {3, 100352, 40}, {5, 32000, 1024},
                            {2, 7, 7}, {4, 5000, 300}, {2, 1024, 1024}}) {
    const int64_t ld = V + 3;
    std::vector<float> m(static_cast<size_t>(rows * ld), 1e30f);  // padding that would win if read
    for (int64_t r = 0; r < rows; ++r) {
      const std::vector<float> v = randn(static_cast<size_t>(V), r % 2 ? 0.02f : 4.0f);
      std::copy(v.begin(), v.end(), m.begin() + r * ld);
      float* x = m.data() + r * ld;
      const float top = *std::max_element(x, x + V);
      for (int64_t i = 0; i < std::min<int64_t>(V, 2 * k + 3); i += 2) x[(i * 7919) % V] = top + 1;  // ties at the top
      x[g() % V] = -INFINITY;
      for (int64_t i = 0; i < V / 50; ++i) x[g() % V] = x[g() % V];
    }
    std::vector<LogitPenalty> pen;
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t t = 0; t < std::min<int64_t>(V, 60); ++t)
        if (g() % 2) pen.push_back({static_cast<int32_t>(r), static_cast<int32_t>((t * 131) % V), 0.1f * (g() % 5), 1.0f + 0.1f * (g() % 4)});
    std::vector<int32_t> pick;
    for (int64_t r = rows - 1; r >= 0; r -= (rows > 3 ? 2 : 1)) pick.push_back(static_cast<int32_t>(r));
    const int64_t n = static_cast<int64_t>(pick.size());

    cu::DeviceBuffer dm = to_dev(m), dp = to_dev(pen), dr = to_dev(pick);
    cu::DeviceBuffer di(sizeof(int32_t) * n * k), dv(sizeof(float) * n * k), ds(sizeof(double) * n);
    cu::penalize_logits(dm.as<float>(), ld, dp.as<LogitPenalty>(), static_cast<int64_t>(pen.size()));
    cu::top_logits(dm.as<float>(), ld, dr.as<int32_t>(), n, V, k, di.as<int32_t>(), dv.as<float>(), ds.as<double>());
    cu::synchronize();
    kernels::penalize_logits(m.data(), ld, pen.data(), static_cast<int64_t>(pen.size()));
    std::vector<int32_t> ids(n * k), got_ids(n * k);
    std::vector<float> values(n * k), got_values(n * k);
    std::vector<double> sums(n), got_sums(n);
    kernels::top_logits(m.data(), ld, pick.data(), n, V, k, ids.data(), values.data(), sums.data());
    const auto rows_back = from_dev(dm, m.size());
    for (size_t i = 0; i < m.size(); ++i) ASSERT_EQ(rows_back[i], m[i]) << "penalised logit " << i << " V " << V;
    di.download(got_ids.data(), got_ids.size() * sizeof(int32_t));
    dv.download(got_values.data(), got_values.size() * sizeof(float));
    ds.download(got_sums.data(), got_sums.size() * sizeof(double));
    // Greedy (k = 1 without the sum: the one-pass path): the largest value's lowest id.
    cu::top_logits(dm.as<float>(), ld, dr.as<int32_t>(), n, V, 1, di.as<int32_t>(), dv.as<float>(), nullptr);
    std::vector<int32_t> g_ids(n);
    std::vector<float> g_values(n);
    di.download(g_ids.data(), n * sizeof(int32_t));
    dv.download(g_values.data(), n * sizeof(float));
    for (int64_t i = 0; i < n; ++i) {
      const float* x = m.data() + pick[i] * ld;
      const int32_t best = static_cast<int32_t>(std::max_element(x, x + V) - x);
      ASSERT_EQ(g_ids[i], best) << "greedy V " << V << " row " << pick[i];
      ASSERT_EQ(g_values[i], x[best]);
    }
    for (int64_t i = 0; i < n; ++i) {
      EXPECT_NEAR(got_sums[i], sums[i], 1e-5 * sums[i]) << "sum_exp V " << V << " row " << pick[i];
      for (int j = 0; j < k; ++j) {
        ASSERT_EQ(got_ids[i * k + j], ids[i * k + j]) << "V " << V << " k " << k << " row " << pick[i] << " rank " << j;
        ASSERT_EQ(got_values[i * k + j], values[i * k + j]) << "V " << V << " row " << pick[i] << " rank " << j;
      }
    }
  }
}
