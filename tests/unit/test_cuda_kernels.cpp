// CUDA kernels (src/kernels/cuda, host API cuda_ops.h) against their plain CPU references on fresh
// random inputs: the packed skinny GEMM for codebook (2-6 bits, rotate on/off, several groups and
// codebook blocks, the bf16 fallback), int8 (f16/f32 scales, per-row and grouped) and dense weights
// against the codec's decode_rows; the Hadamard rotation against codecs/compose.h; RMSNorm, RoPE,
// SiLU*up and GELU-tanh*up against kernels/cpu; decode attention over the paged bf16 KV cache against
// kernels/cpu/attention.h (GQA, long contexts split over positions, sliding window, soft-capping).
// Without a CUDA device every test skips with "no CUDA device: ..." (CI has no GPU).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include "base/half.h"
#include "codecs/codebook/codebook_codec.h"
#include "codecs/codec_registry.h"
#include "codecs/compose.h"
#include "kernels/cpu/activation.h"
#include "kernels/cpu/attention.h"
#include "kernels/cpu/norm.h"
#include "kernels/cpu/rope.h"
#include "kernels/cuda/cuda_ops.h"

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
void check_matmul(const cu::DeviceMatrix& dm, const std::vector<float>& W, int64_t rows, int64_t cols, int64_t n,
                  const std::string& what) {
  const std::vector<float> x = randn(static_cast<size_t>(n * cols));
  cu::DeviceBuffer dx = to_dev(x), dy = poisoned(static_cast<size_t>(n * rows));
  dm.matmul(dx.as<float>(), n, dy.as<float>());
  cu::synchronize();
  const std::vector<float> y = from_dev(dy, static_cast<size_t>(n * rows));
  int bad = 0;
  for (int64_t i = 0; i < n; ++i)
    for (int64_t r = 0; r < rows; ++r) {
      double ref = 0, mag = 0;
      for (int64_t c = 0; c < cols; ++c) {
        ref += static_cast<double>(W[r * cols + c]) * x[i * cols + c];
        mag += std::fabs(static_cast<double>(W[r * cols + c]) * x[i * cols + c]);
      }
      const double got = y[i * rows + r], tol = 0.0079 * mag + 1e-6;
      if (!(std::fabs(got - ref) <= tol) && bad++ < 5)
        ADD_FAILURE() << what << " n=" << n << " y[" << i << "][" << r << "] = " << got << ", want " << ref
                      << " (tol " << tol << ")";
    }
  EXPECT_EQ(bad, 0) << what << " n=" << n << ": " << bad << " of " << n * rows << " outputs off";
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
  for (int64_t n : {1, 3, 16}) check_matmul(dm, W, c.rows, c.cols, n, what);
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
    const std::vector<float> w0 = randn(static_cast<size_t>(c.rows * c.cols), 0.05f);
    CodecParams p = {{"group", c.group}, {"scale_dtype", c.scale_dtype}};
    if (c.rotate) p["rotate"] = true;
    const EncodedTensor t = make_codec("int8")->encode(w0.data(), c.rows, c.cols, p);
    const auto views = t.views();
    auto wm = make_codec("int8")->open(views, c.rows, c.cols, t.params);
    std::vector<float> W(static_cast<size_t>(c.rows * c.cols));
    wm->decode_rows(0, c.rows, W.data());
    cu::RotateParams rot;
    if (c.rotate) {
      rot.on = true;
      rot.seed = t.params.at("rotate").at("seed").get<uint64_t>();
      rot.block = t.params.at("rotate").at("block").get<int64_t>();
    }
    cu::Int8Host h{t.arrays.at("qweight").bytes.data(), t.arrays.at("scales").bytes.data(),
                   std::string(c.scale_dtype) == "f16", c.rows, c.cols, c.group, rot};
    const cu::DeviceMatrix dm = cu::DeviceMatrix::upload(h);
    for (int64_t n : {1, 3, 16}) check_matmul(dm, W, c.rows, c.cols, n, dm.layout() + " g" + std::to_string(c.group));
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
    for (int64_t n : {1, 3, 16}) {
      check_matmul(b, Wb, rows, cols, n, "bf16");
      check_matmul(h, Wh, rows, cols, n, "f16");
      check_matmul(f, w, rows, cols, n, "f32");
    }
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
  for (auto [rows, dim] : {std::pair<int64_t, int64_t>{1, 5120}, {7, 300}, {16, 3072}}) {
    const std::vector<float> x = randn(static_cast<size_t>(rows * dim), 3.f), w = randn(static_cast<size_t>(dim));
    std::vector<float> ref(x.size());
    kernels::rmsnorm(x.data(), w.data(), rows, dim, 1e-5f, ref.data());
    cu::DeviceBuffer dx = to_dev(x), dw = to_dev(w), dout = poisoned(x.size());
    cu::rmsnorm(dx.as<float>(), dw.as<float>(), rows, dim, 1e-5f, dout.as<float>());
    cu::synchronize();
    const auto got = from_dev(dout, x.size());
    for (size_t i = 0; i < x.size(); ++i) ASSERT_NEAR(got[i], ref[i], 2e-5f * (1 + std::fabs(ref[i]))) << i;
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

namespace {

struct AttnCase {
  int64_t n_heads, n_kv, head_dim, block_size, window;
  float softcap;
  std::vector<int32_t> pos;  // one per sequence
};

void run_attention(const AttnCase& c) {
  const int64_t layers = 2, layer = 1, nseq = static_cast<int64_t>(c.pos.size());
  const size_t row_bytes = kv_row_bytes(KvType::BF16, c.head_dim);
  const size_t head_stride = c.block_size * row_bytes, kv_offset = c.n_kv * head_stride;
  const size_t layer_offset = layer * 2 * kv_offset, block_bytes = layers * 2 * kv_offset;
  const int32_t max_pos = *std::max_element(c.pos.begin(), c.pos.end());
  const int64_t max_blocks = max_pos / c.block_size + 1;
  // Pool blocks handed out in a shuffled order, as a paged allocator would.
  std::vector<int32_t> ids(static_cast<size_t>(nseq * max_blocks));
  std::iota(ids.begin(), ids.end(), 0);
  std::shuffle(ids.begin(), ids.end(), rng());
  std::vector<uint8_t> pool(ids.size() * block_bytes, 0xff);  // bf16 NaN wherever no row was written
  std::vector<float> row(c.head_dim);
  std::vector<uint8_t*> host_blocks(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) host_blocks[i] = pool.data() + static_cast<size_t>(ids[i]) * block_bytes;
  for (int64_t s = 0; s < nseq; ++s) {
    KvLayerView v{KvType::BF16, c.block_size, c.head_dim, row_bytes, head_stride, kv_offset, layer_offset,
                  host_blocks.data() + s * max_blocks};
    for (int64_t p = 0; p <= c.pos[s]; ++p)
      for (int part = 0; part < 2; ++part)
        for (int64_t h = 0; h < c.n_kv; ++h) {
          row = randn(static_cast<size_t>(c.head_dim));
          kernels::kv_store_row(KvType::BF16, row.data(), c.head_dim, v.row(part, h, p));
        }
  }
  const std::vector<float> q = randn(static_cast<size_t>(nseq * c.n_heads * c.head_dim));
  kernels::AttentionShape shape{c.n_heads, c.n_kv, c.head_dim, c.window, 1.0f / std::sqrt(float(c.head_dim)), c.softcap};
  std::vector<float> ref(q.size()), scores(max_pos + 1), tmp(c.head_dim);
  for (int64_t s = 0; s < nseq; ++s) {
    KvLayerView v{KvType::BF16, c.block_size, c.head_dim, row_bytes, head_stride, kv_offset, layer_offset,
                  host_blocks.data() + s * max_blocks};
    for (int64_t h = 0; h < c.n_heads; ++h)
      kernels::attention_head(shape, v, h / (c.n_heads / c.n_kv), q.data() + (s * c.n_heads + h) * c.head_dim,
                              c.pos[s], scores.data(), tmp.data(), ref.data() + (s * c.n_heads + h) * c.head_dim);
  }
  cu::DeviceBuffer dpool = to_dev(pool), dtable = to_dev(ids), dq = to_dev(q), dpos = to_dev(c.pos),
                   dout = poisoned(q.size());
  cu::PagedKv kv{dpool.as<uint8_t>(), block_bytes, dtable.as<int32_t>(), max_blocks, c.block_size, c.head_dim,
                 row_bytes, head_stride, kv_offset, layer_offset};
  cu::AttentionParams ap{c.n_heads, c.n_kv, c.head_dim, c.window, shape.scale, c.softcap};
  cu::DeviceBuffer ws(cu::decode_attention_workspace(ap, nseq, max_pos));
  cu::decode_attention(ap, kv, dq.as<float>(), dpos.as<int32_t>(), nseq, max_pos, dout.as<float>(), ws.data());
  cu::synchronize();
  const auto got = from_dev(dout, q.size());
  for (size_t i = 0; i < got.size(); ++i)
    ASSERT_NEAR(got[i], ref[i], 2e-4f) << "heads " << c.n_heads << "/" << c.n_kv << " hd " << c.head_dim << " i " << i;
}

}  // namespace

TEST(CudaAttention, DecodePagedBf16) {
  REQUIRE_CUDA_DEVICE();
  run_attention({8, 2, 128, 16, 0, 0.f, {0, 5, 300}});           // GQA 4, one split
  run_attention({40, 10, 128, 16, 0, 0.f, {1100, 17, 2047}});    // Phi-4 heads, split over positions
  run_attention({8, 1, 64, 32, 0, 0.f, {700, 63}});              // group 8
  run_attention({6, 6, 96, 16, 0, 0.f, {520, 3}});               // no GQA, head_dim 96 (partial lanes)
  run_attention({4, 2, 256, 16, 100, 30.f, {900, 50}});          // window + soft-cap, head_dim 256
}
