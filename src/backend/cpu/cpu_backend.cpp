#include "backend/cpu/cpu_backend.h"

#include <algorithm>
#include <cstring>
#include <new>
#include <vector>

#include "base/cpu_features.h"
#include "base/error.h"
#include "base/memory_bandwidth.h"
#include "base/thread_pool.h"
#include "kernels/cpu/activation.h"
#include "kernels/cpu/attention.h"
#include "kernels/cpu/norm.h"
#include "kernels/cpu/rope.h"

namespace upg {

std::string CpuBackend::name() const { return str_cat("cpu (", simd_level_name(simd_level()), ")"); }

void* CpuBackend::allocate(size_t bytes) {
  // Uninitialised: pages are committed only when written (a KV block's rows as they fill).
  return ::operator new[](std::max<size_t>(bytes, 1));
}

void CpuBackend::deallocate(void* p) noexcept { ::operator delete[](p); }

double CpuBackend::measure_bandwidth() { return measure_read_bandwidth(); }

void CpuBackend::copy(void* dst, const void* src, size_t bytes) { std::memcpy(dst, src, bytes); }
void CpuBackend::upload(void* dst, const void* host, size_t bytes) { std::memcpy(dst, host, bytes); }
void CpuBackend::download(void* host, const void* src, size_t bytes) { std::memcpy(host, src, bytes); }

void CpuBackend::embed(StepContext&, const WeightMatrix& w, std::span<const int32_t> tokens, float* out) {
  for (size_t t = 0; t < tokens.size(); ++t) w.decode_rows(tokens[t], tokens[t] + 1, out + t * w.cols());
}

void CpuBackend::rmsnorm(const float* x, const float* weight, int64_t rows, int64_t dim, float eps, float* out) {
  kernels::rmsnorm(x, weight, rows, dim, eps, out);
}

void CpuBackend::rope(float* x, int64_t n, int64_t heads, int64_t head_dim, int64_t rotary_dim, const float* cos,
                      const float* sin) {
  kernels::apply_rope(x, n, heads, head_dim, rotary_dim, cos, sin);
}

void CpuBackend::gated_activation(Activation act, const float* gate_up, int64_t n, int64_t width, float* out) {
  for (int64_t t = 0; t < n; ++t) {
    const float* g = gate_up + t * 2 * width;
    float* a = out + t * width;
    switch (act) {
      case Activation::Silu: kernels::silu_mul(g, g + width, a, width); break;
      case Activation::GeluTanh: kernels::gelu_tanh_mul(g, g + width, a, width); break;
      case Activation::Gelu: kernels::gelu_mul(g, g + width, a, width); break;
    }
  }
}

void CpuBackend::add_bias(float* y, const float* bias, int64_t rows, int64_t width, int64_t ld) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < width; ++c) y[r * ld + c] += bias[c];
}

void CpuBackend::matmul_add(const WeightMatrix& w, const float* x, int64_t n, float* y) {
  thread_local std::vector<float> product;  // the same sums as matmul then add
  product.resize(static_cast<size_t>(n * w.rows()));
  w.matmul(x, n, product.data());
  add(y, product.data(), n * w.rows());
}

void CpuBackend::add(float* x, const float* y, int64_t count) {
  for (int64_t i = 0; i < count; ++i) x[i] += y[i];
}

void CpuBackend::scale(float* x, int64_t count, float s) {
  for (int64_t i = 0; i < count; ++i) x[i] *= s;
}

void CpuBackend::softcap(float* x, int64_t count, float cap) { kernels::softcap(x, count, cap); }

void CpuBackend::copy_columns(float* dst, int64_t dst_ld, const float* src, int64_t src_ld, int64_t rows,
                              int64_t width) {
  for (int64_t r = 0; r < rows; ++r) std::memcpy(dst + r * dst_ld, src + r * src_ld, sizeof(float) * width);
}

void CpuBackend::gather_rows(StepContext&, float* dst, const float* src, std::span<const int32_t> rows, int64_t width) {
  for (size_t i = 0; i < rows.size(); ++i)
    std::memcpy(dst + i * width, src + static_cast<int64_t>(rows[i]) * width, sizeof(float) * width);
}

void CpuBackend::add_weighted_rows(StepContext&, float* dst, const float* src, std::span<const int32_t> rows,
                                   std::span<const float> weights, int64_t width) {
  UPG_CHECK(weights.size() == rows.size(), "add_weighted_rows: ", rows.size(), " rows, ", weights.size(), " weights");
  for (size_t r = 0; r < rows.size(); ++r) {
    float* o = dst + static_cast<int64_t>(rows[r]) * width;
    const float* y = src + static_cast<int64_t>(r) * width;
    const float w = weights[r];
    for (int64_t i = 0; i < width; ++i) o[i] += y[i] * w;
  }
}

void CpuBackend::fill(float* x, int64_t count, float v) { std::fill(x, x + count, v); }

void CpuBackend::deinterleave_pairs(float* x, int64_t segments, int64_t ld, int64_t width) {
  std::vector<float> tmp(static_cast<size_t>(width));
  for (int64_t s = 0; s < segments; ++s) {
    float* v = x + s * ld;
    for (int64_t j = 0; j < width / 2; ++j) {
      tmp[j] = v[2 * j];
      tmp[width / 2 + j] = v[2 * j + 1];
    }
    std::memcpy(v, tmp.data(), sizeof(float) * width);
  }
}

void CpuBackend::penalize_logits(StepContext&, float* logits, int64_t ld, std::span<const LogitPenalty> penalties) {
  kernels::penalize_logits(logits, ld, penalties.data(), static_cast<int64_t>(penalties.size()));
}

void CpuBackend::top_logits(StepContext&, const float* logits, int64_t ld, std::span<const int32_t> rows, int64_t vocab,
                            int k, int32_t* ids, float* values, double* sum_exp) {
  kernels::top_logits(logits, ld, rows.data(), static_cast<int64_t>(rows.size()), vocab, k, ids, values, sum_exp);
}

void CpuBackend::head_products(const float* w, bool transpose, int64_t heads, int64_t rows, int64_t cols,
                               const float* x, int64_t x_ld, int64_t n, float* y, int64_t y_ld) {
  parallel_for(n * heads, [&](int64_t i0, int64_t i1) {  // (token, head) pairs
    for (int64_t th = i0; th < i1; ++th) {
      const float* W = w + (th % heads) * rows * cols;
      const float* xi = x + th * x_ld;
      float* yo = y + th * y_ld;
      if (transpose) {
        std::fill(yo, yo + cols, 0.0f);
        for (int64_t i = 0; i < rows; ++i)
          for (int64_t j = 0; j < cols; ++j) yo[j] += xi[i] * W[i * cols + j];
      } else {
        for (int64_t i = 0; i < rows; ++i) {
          float s = 0;
          for (int64_t j = 0; j < cols; ++j) s += W[i * cols + j] * xi[j];
          yo[i] = s;
        }
      }
    }
  });
}

namespace {
struct CpuStep : StepContext {
  std::vector<KvLayerView> kv;
  std::vector<int64_t> pos;
  size_t layer_stride = 0;
  KvLayerView view(size_t t, int64_t layer) const {
    KvLayerView v = kv[t];
    v.layer_offset += static_cast<size_t>(layer) * layer_stride;
    return v;
  }
};
}  // namespace

std::unique_ptr<StepContext> CpuBackend::new_context() { return std::make_unique<CpuStep>(); }

void CpuBackend::bind_kv(StepContext& ctx, std::span<const KvLayerView> layer0, std::span<const int64_t> blocks,
                         std::span<const int64_t> pos, size_t layer_stride) {
  CpuStep& c = static_cast<CpuStep&>(ctx);
  c.kv.assign(layer0.begin(), layer0.end());
  c.pos.assign(pos.begin(), pos.end());
  c.layer_stride = layer_stride;
}

void CpuBackend::store_kv(StepContext& ctx, int64_t layer, int kv_index, const float* x, int64_t ld,
                          int64_t n_kv_heads) {
  const CpuStep& c = static_cast<const CpuStep&>(ctx);
  for (size_t t = 0; t < c.kv.size(); ++t) {
    const KvLayerView v = c.view(t, layer);
    for (int64_t g = 0; g < n_kv_heads; ++g)
      kernels::kv_store_row(v.type, x + static_cast<int64_t>(t) * ld + g * v.head_dim, v.head_dim,
                            v.row(kv_index, g, c.pos[t]));
  }
}

void CpuBackend::attention(StepContext& ctx, int64_t layer, const AttentionSpec& s, const float* q, float* out) {
  const CpuStep& c = static_cast<const CpuStep&>(ctx);
  const int64_t n = static_cast<int64_t>(c.kv.size()), nh = s.n_heads, hd = s.head_dim;
  const int64_t group = nh / s.n_kv_heads;
  const int64_t max_pos = n ? *std::max_element(c.pos.begin(), c.pos.end()) : 0;
  const kernels::AttentionShape as{nh, s.n_kv_heads, hd, s.window, s.scale, s.softcap, s.value_dim};
  const int64_t od = s.value_dim > 0 ? s.value_dim : hd;  // out per head
  std::vector<KvLayerView> views(c.kv.size());
  for (size_t t = 0; t < c.kv.size(); ++t) views[t] = c.view(t, layer);
  parallel_for_dynamic(n * nh, 4, [&](int64_t i0, int64_t i1) {  // (token, head) pairs
    thread_local std::vector<float> scores, tmp;  // per thread, kept between calls
    scores.resize(std::max(scores.size(), static_cast<size_t>(max_pos + 1)));
    tmp.resize(std::max(tmp.size(), static_cast<size_t>(hd)));
    for (int64_t th = i0; th < i1; ++th) {
      const int64_t t = th / nh, h = th % nh;
      kernels::attention_head(as, views[t], h / group, q + th * hd, c.pos[t], scores.data(), tmp.data(), out + th * od);
    }
  });
}

std::shared_ptr<Backend> cpu_backend() {
  static const std::shared_ptr<Backend> b = std::make_shared<CpuBackend>();
  return b;
}

}  // namespace upg
