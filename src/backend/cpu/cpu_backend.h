// The CPU backend: the Backend ops (backend/backend.h) on host memory, through the kernels of
// kernels/cpu and each codec's own WeightMatrix::matmul (on the current thread pool, base/thread_pool.h:
// the Engine's during its steps). No state of its
// own (a step's cache views are in the Engine's StepContext): prepare() and vector() do nothing
// beyond handing back what the model holds.
#pragma once
#include "backend/backend.h"

namespace upg {

class CpuBackend final : public Backend {
 public:
  std::string name() const override;
  bool host_memory() const override { return true; }
  size_t memory_in_use() const override { return 0; }
  void synchronize() override {}
  double measure_bandwidth() override;
  void* allocate(size_t bytes) override;
  void deallocate(void* p) noexcept override;
  void copy(void* dst, const void* src, size_t bytes) override;
  void upload(void* dst, const void* host, size_t bytes) override;
  void download(void* host, const void* src, size_t bytes) override;

  void prepare(const WeightMatrix& w) override {}
  std::string layout(const WeightMatrix& w) const override { return w.codec(); }
  void matmul(const WeightMatrix& w, const float* x, int64_t n, float* y) override { w.matmul(x, n, y); }
  void matmul_add(const WeightMatrix& w, const float* x, int64_t n, float* y) override;
  void embed(StepContext& ctx, const WeightMatrix& w, std::span<const int32_t> tokens, float* out) override;
  const float* vector(const std::vector<float>& v) override { return v.data(); }

  void rmsnorm(const float* x, const float* weight, int64_t rows, int64_t dim, float eps, float* out) override;
  void rope(float* x, int64_t n, int64_t heads, int64_t head_dim, int64_t rotary_dim, const float* cos,
            const float* sin) override;
  void gated_activation(Activation act, const float* gate_up, int64_t n, int64_t width, float* out) override;
  void add_bias(float* y, const float* bias, int64_t rows, int64_t width, int64_t ld) override;
  void add(float* x, const float* y, int64_t count) override;
  void scale(float* x, int64_t count, float s) override;
  void softcap(float* x, int64_t count, float cap) override;
  void copy_columns(float* dst, int64_t dst_ld, const float* src, int64_t src_ld, int64_t rows,
                    int64_t width) override;
  void gather_rows(StepContext& ctx, float* dst, const float* src, std::span<const int32_t> rows,
                   int64_t width) override;
  void add_weighted_rows(StepContext& ctx, float* dst, const float* src, std::span<const int32_t> rows,
                         std::span<const float> weights, int64_t width) override;
  void fill(float* x, int64_t count, float v) override;
  void deinterleave_pairs(float* x, int64_t segments, int64_t ld, int64_t width) override;
  void head_products(const float* w, bool transpose, int64_t heads, int64_t rows, int64_t cols, const float* x,
                     int64_t x_ld, int64_t n, float* y, int64_t y_ld) override;
  void penalize_logits(StepContext& ctx, float* logits, int64_t ld, std::span<const LogitPenalty> penalties) override;
  void top_logits(StepContext& ctx, const float* logits, int64_t ld, std::span<const int32_t> rows, int64_t vocab, int k,
                  int32_t* ids, float* values, double* sum_exp) override;

  std::unique_ptr<StepContext> new_context() override;
  void bind_kv(StepContext& ctx, std::span<const KvLayerView> layer0, std::span<const int64_t> blocks,
               std::span<const int64_t> pos, size_t layer_stride) override;
  void store_kv(StepContext& ctx, int64_t layer, int kv_index, const float* x, int64_t ld,
                int64_t n_kv_heads) override;
  void attention(StepContext& ctx, int64_t layer, const AttentionSpec& s, const float* q, float* out) override;
};

}  // namespace upg
