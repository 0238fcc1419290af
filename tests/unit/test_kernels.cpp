// CPU kernels against plain reference implementations on fresh random inputs: the dense matmul
// (fast tiled/AVX2 path vs the reference loop, every dtype, n = 1 and n > 1, odd shapes, unaligned
// data), RMSNorm, RoPE (rotate_half, partial), softmax and GQA attention with a KV cache.
#include <cmath>
#include <random>

#include "base/error.h"
#include "base/half.h"
#include "codecs/dense/dense_matrix.h"
#include "kernels/cpu/activation.h"
#include "kernels/cpu/attention.h"
#include "kernels/cpu/norm.h"
#include "kernels/cpu/rope.h"
#include "test_util.h"

using namespace upg;

namespace {

std::vector<float> randn(size_t n, std::mt19937& rng, float scale = 1.0f) {
  std::normal_distribution<float> d(0.f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

// Stores w (rows x cols) as dtype at byte offset `misalign` of a buffer; returns the buffer.
std::vector<uint8_t> store(const std::vector<float>& w, TensorDType dtype, size_t misalign) {
  const size_t es = tensor_dtype_size(dtype);
  std::vector<uint8_t> b(misalign + w.size() * es);
  for (size_t i = 0; i < w.size(); ++i) {
    if (dtype == TensorDType::F32) std::memcpy(&b[misalign + 4 * i], &w[i], 4);
    else {
      uint16_t h = dtype == TensorDType::BF16 ? f32_to_bf16(w[i]) : f32_to_f16(w[i]);
      std::memcpy(&b[misalign + 2 * i], &h, 2);
    }
  }
  return b;
}

}  // namespace

TEST(Kernels, DenseMatmulFastMatchesReference) {
  std::mt19937 rng(42);
  struct Shape { int64_t rows, cols, n; };
  const Shape shapes[] = {{1, 1, 1}, {7, 13, 1}, {64, 256, 1}, {70, 300, 2}, {130, 517, 5},
                          {257, 1000, 37}, {64, 8, 3}, {5, 33, 4}, {200, 96, 1}};
  for (TensorDType dt : {TensorDType::F32, TensorDType::F16, TensorDType::BF16}) {
    for (const Shape& s : shapes) {
      for (size_t misalign : {size_t{0}, size_t{2}}) {
        SCOPED_TRACE(str_cat(tensor_dtype_name(dt), " ", s.rows, "x", s.cols, " n=", s.n, " misalign=", misalign));
        auto w = randn(s.rows * s.cols, rng);
        auto buf = store(w, dt, misalign);
        DenseMatrix m(buf.data() + misalign, dt, s.rows, s.cols);
        auto x = randn(s.n * s.cols, rng);
        std::vector<float> fast(s.n * s.rows, NAN), ref(s.n * s.rows);
        m.matmul(x.data(), s.n, fast.data());
        m.matmul_reference(x.data(), s.n, ref.data());
        for (int64_t i = 0; i < s.n * s.rows; ++i) {
          // fp32 accumulation error bound ~ sqrt(cols) * eps * |x||w|.
          ASSERT_NEAR(fast[i], ref[i], 1e-5f * std::sqrt(static_cast<float>(s.cols)) * 4.0f + 1e-5f * std::fabs(ref[i]))
              << "at " << i;
        }
        // decode_rows gives the stored values exactly.
        std::vector<float> rows(s.rows * s.cols);
        m.decode_rows(0, s.rows, rows.data());
        for (int64_t i = 0; i < s.rows * s.cols; ++i) {
          float e = dt == TensorDType::F32 ? w[i] : dt == TensorDType::BF16 ? bf16_to_f32(f32_to_bf16(w[i]))
                                                                             : f16_to_f32(f32_to_f16(w[i]));
          ASSERT_EQ(rows[i], e);
        }
        EXPECT_EQ(m.stored_bytes(), static_cast<size_t>(s.rows * s.cols) * tensor_dtype_size(dt));
      }
    }
  }
}

TEST(Kernels, MakeWeightMatrixChecksTensor) {
  std::vector<float> v(12, 1.f);
  TensorView t{"w", TensorDType::F32, {3, 4}, reinterpret_cast<const uint8_t*>(v.data()), 48};
  auto m = make_weight_matrix(t);
  EXPECT_EQ(m->rows(), 3);
  EXPECT_EQ(m->cols(), 4);
  EXPECT_EQ(m->codec(), "f32");
  t.shape = {12};
  EXPECT_THROW(make_weight_matrix(t), Error);
  t.shape = {3, 4};
  t.dtype = TensorDType::I32;
  try {
    make_weight_matrix(t);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'w'"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("I32"), std::string::npos);
  }
  EXPECT_THROW(m->decode_rows(2, 4, v.data()), Error);
}

TEST(Kernels, RmsNormMatchesNaive) {
  std::mt19937 rng(1);
  for (int64_t dim : {1, 7, 64, 515}) {
    const int64_t rows = 3;
    auto x = randn(rows * dim, rng, 3.f), w = randn(dim, rng);
    std::vector<float> out(rows * dim);
    kernels::rmsnorm(x.data(), w.data(), rows, dim, 1e-5f, out.data());
    for (int64_t r = 0; r < rows; ++r) {
      double ss = 0;
      for (int64_t i = 0; i < dim; ++i) ss += double(x[r * dim + i]) * x[r * dim + i];
      const double inv = 1.0 / std::sqrt(ss / dim + 1e-5);
      for (int64_t i = 0; i < dim; ++i)
        ASSERT_NEAR(out[r * dim + i], w[i] * x[r * dim + i] * inv, 1e-5 * (1 + std::fabs(w[i] * x[r * dim + i] * inv)));
    }
    kernels::rmsnorm(x.data(), w.data(), rows, dim, 1e-5f, x.data());  // in place
    for (int64_t i = 0; i < rows * dim; ++i) ASSERT_EQ(x[i], out[i]);
  }
}

TEST(Kernels, RopeMatchesRotateHalf) {
  std::mt19937 rng(2);
  const int64_t n = 5, heads = 3, hd = 16, pos0 = 37;
  for (int64_t rot : {16, 12, 2}) {
    const int64_t half = rot / 2;
    std::vector<float> inv(half);
    for (int64_t j = 0; j < half; ++j) inv[j] = static_cast<float>(std::pow(10000.0, -2.0 * j / rot));
    const float scale = 1.19f;
    std::vector<float> cs(n * half), sn(n * half);
    kernels::rope_cos_sin(inv.data(), half, scale, pos0, n, cs.data(), sn.data());
    auto x = randn(n * heads * hd, rng);
    auto y = x;
    kernels::apply_rope(y.data(), n, heads, hd, rot, cs.data(), sn.data());
    for (int64_t t = 0; t < n; ++t)
      for (int64_t h = 0; h < heads; ++h)
        for (int64_t i = 0; i < hd; ++i) {
          const float* v = &x[(t * heads + h) * hd];
          double expect;
          if (i >= rot) {
            expect = v[i];  // pass-through
          } else {
            const int64_t j = i % half;
            const double a = double(inv[j]) * double(pos0 + t);
            const double c = std::cos(a) * scale, s = std::sin(a) * scale;
            // q * cos + rotate_half(q) * sin, rotate_half(q) = cat(-q2, q1)
            const double rh = i < half ? -v[i + half] : v[i - half];
            expect = v[i] * c + rh * s;
          }
          ASSERT_NEAR(y[(t * heads + h) * hd + i], expect, 2e-5) << "rot " << rot << " t " << t << " i " << i;
        }
  }
}

TEST(Kernels, SoftmaxAndSiluMatchNaive) {
  std::mt19937 rng(3);
  auto x = randn(77, rng, 10.f);
  auto y = x;
  kernels::softmax(y.data(), 77);
  double mx = *std::max_element(x.begin(), x.end()), z = 0;
  for (float v : x) z += std::exp(v - mx);
  double sum = 0;
  for (int i = 0; i < 77; ++i) {
    ASSERT_NEAR(y[i], std::exp(x[i] - mx) / z, 1e-6);
    sum += y[i];
  }
  EXPECT_NEAR(sum, 1.0, 1e-5);
  auto g = randn(50, rng, 4.f), u = randn(50, rng);
  std::vector<float> o(50);
  kernels::silu_mul(g.data(), u.data(), o.data(), 50);
  for (int i = 0; i < 50; ++i) ASSERT_NEAR(o[i], u[i] * g[i] / (1 + std::exp(-double(g[i]))), 1e-5);
  // GeGLU (tanh approximation and exact) and soft-capping against double-precision formulas.
  kernels::gelu_tanh_mul(g.data(), u.data(), o.data(), 50);
  for (int i = 0; i < 50; ++i) {
    const double x = g[i];
    ASSERT_NEAR(o[i], u[i] * 0.5 * x * (1 + std::tanh(std::sqrt(2 / M_PI) * (x + 0.044715 * x * x * x))), 1e-5);
  }
  kernels::gelu_mul(g.data(), u.data(), o.data(), 50);
  for (int i = 0; i < 50; ++i) ASSERT_NEAR(o[i], u[i] * 0.5 * g[i] * (1 + std::erf(g[i] / std::sqrt(2.0))), 1e-5);
  o = x;
  kernels::softcap(o.data(), 50, 3.0f);
  for (int i = 0; i < 50; ++i) {
    ASSERT_NEAR(o[i], 3.0 * std::tanh(x[i] / 3.0), 1e-6);
    ASSERT_LE(std::fabs(o[i]), 3.0f);
  }
}

TEST(Kernels, PagedAttentionMatchesNaiveForEveryRowType) {
  std::mt19937 rng(4);
  for (KvType type : {KvType::F32, KvType::BF16, KvType::F16, KvType::Q8})
    for (int64_t window : {0, 3}) {
      const int64_t nh = 6, nkv = 2, hd = 20, len = 13, B = 4, nblocks = (len + B - 1) / B;
      const size_t rb = kv_row_bytes(type, hd);
      // One layer; blocks in scrambled order to check the block table is followed.
      std::vector<std::vector<uint8_t>> storage(nblocks, std::vector<uint8_t>(2 * nkv * B * rb));
      std::vector<uint8_t*> blocks;
      for (int64_t j = nblocks - 1; j >= 0; --j) blocks.push_back(storage[j].data());
      KvLayerView view{type, B, hd, rb, B * rb, nkv * B * rb, 0, blocks.data()};
      // Keys/values as stored (then read back: the reference uses what the cache holds).
      std::vector<float> kc(nkv * len * hd), vc(nkv * len * hd);
      for (int64_t g = 0; g < nkv; ++g)
        for (int64_t p = 0; p < len; ++p) {
          auto k = randn(hd, rng), v = randn(hd, rng);
          kernels::kv_store_row(type, k.data(), hd, view.row(0, g, p));
          kernels::kv_store_row(type, v.data(), hd, view.row(1, g, p));
          kernels::kv_load_row(type, view.row(0, g, p), hd, &kc[(g * len + p) * hd]);
          kernels::kv_load_row(type, view.row(1, g, p), hd, &vc[(g * len + p) * hd]);
        }
      kernels::AttentionShape s{nh, nkv, hd, window, 1.0f / std::sqrt(float(hd))};
      std::vector<float> scores(len), tmp(hd), out(hd);
      for (int64_t pos : {0, 5, 12})
        for (int64_t h = 0; h < nh; ++h) {
          const int64_t g = h / (nh / nkv);
          auto q = randn(hd, rng);
          kernels::attention_head(s, view, g, q.data(), pos, scores.data(), tmp.data(), out.data());
          std::vector<double> sc;
          std::vector<int64_t> ps;
          for (int64_t p = 0; p <= pos; ++p) {
            if (window > 0 && pos - p >= window) continue;
            double d = 0;
            for (int64_t i = 0; i < hd; ++i) d += double(q[i]) * kc[(g * len + p) * hd + i];
            sc.push_back(d / std::sqrt(double(hd)));
            ps.push_back(p);
          }
          double mx = *std::max_element(sc.begin(), sc.end()), z = 0;
          for (double& e : sc) z += (e = std::exp(e - mx));
          for (int64_t i = 0; i < hd; ++i) {
            double o = 0;
            for (size_t k = 0; k < ps.size(); ++k) o += sc[k] / z * vc[(g * len + ps[k]) * hd + i];
            ASSERT_NEAR(out[i], o, 1e-5) << kv_type_name(type) << " window " << window << " pos " << pos << " h " << h;
          }
        }
    }
}
