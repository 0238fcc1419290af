// The CUDA backend: the Backend ops (backend/backend.h) on one NVIDIA GPU, through the kernels of
// kernels/cuda, all queued on one stream of its own. Weights are uploaded once, still compressed
// (backend/cuda/cuda_codecs.h); activations and the KV cache (bf16) live in device memory; the host
// sends token ids, rotary angles and the step's block tables, and gets back the requested logits.
#pragma once
#include <memory>
#include <mutex>
#include <unordered_map>

#include "backend/backend.h"
#include "kernels/cuda/cuda_ops.h"

namespace upg {

class CudaBackend final : public Backend {
 public:
  // Device `device` (0-based); throws Error when there is no such device.
  explicit CudaBackend(int device);
  ~CudaBackend() override;

  std::string name() const override { return name_; }
  bool host_memory() const override { return false; }
  size_t memory_in_use() const override;
  void synchronize() override;
  double measure_bandwidth() override;
  void* allocate(size_t bytes) override;
  void deallocate(void* p) noexcept override;
  void copy(void* dst, const void* src, size_t bytes) override;
  void upload(void* dst, const void* host, size_t bytes) override;
  void download(void* host, const void* src, size_t bytes) override;

  void prepare(const WeightMatrix& w) override;
  std::string layout(const WeightMatrix& w) const override;
  void matmul(const WeightMatrix& w, const float* x, int64_t n, float* y) override;
  void matmul_add(const WeightMatrix& w, const float* x, int64_t n, float* y) override;
  void embed(StepContext& ctx, const WeightMatrix& w, std::span<const int32_t> tokens, float* out) override;
  const float* vector(const std::vector<float>& v) override;

  void rmsnorm(const float* x, const float* weight, int64_t rows, int64_t dim, float eps, float* out) override;
  void rope(float* x, int64_t n, int64_t heads, int64_t head_dim, int64_t rotary_dim, const float* cos,
            const float* sin) override;
  void gated_activation(Activation act, const float* gate_up, int64_t n, int64_t width, float* out) override;
  // With UPG_CUDA_FUSE=1: fused with the rotation of next's input when next rotates and n <= 16. Off
  // by default until the fused kernels have run on a GPU (written and compiled in session 19, when no
  // GPU could be had; test_cuda_kernels / test_cuda_engine check them against the separate kernels).
  void rmsnorm_for(const WeightMatrix* next, const float* x, const float* weight, int64_t rows, int64_t dim, float eps,
                   float* out) override;
  void gated_activation_for(const WeightMatrix* next, Activation act, const float* gate_up, int64_t n, int64_t width,
                            float* out) override;
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
  std::unique_lock<std::mutex> exclusive() override { return std::unique_lock<std::mutex>(step_mu_); }
  void bind_kv(StepContext& ctx, std::span<const KvLayerView> layer0, std::span<const int64_t> blocks,
               std::span<const int64_t> pos, size_t layer_stride) override;
  void store_kv(StepContext& ctx, int64_t layer, int kv_index, const float* x, int64_t ld,
                int64_t n_kv_heads) override;
  void attention_input(StepContext& ctx, int64_t layer, const float* qkv, int64_t ld, int64_t n, int64_t n_heads,
                       int64_t n_kv_heads, int64_t head_dim, int64_t rotary_dim, const float* cos, const float* sin,
                       float* q_out, float* k_scratch) override;
  void attention(StepContext& ctx, int64_t layer, const AttentionSpec& s, const float* q, float* out) override;

  // How many rmsnorm_for / gated_activation_for calls rotated next's input in their own pass (ops
  // queued, not graph replays).
  int64_t fused_input_rotations() const { return fused_input_rotations_; }

  // CUDA graphs of the engine's layer loop (off with UPG_CUDA_GRAPHS=0): a key is recorded the second
  // time it is seen (by then every buffer its ops use has its final size) and replayed after that.
  bool replay(StepContext& ctx, std::span<const uint64_t> key) override;
  bool begin_recording(StepContext& ctx, std::span<const uint64_t> key) override;
  bool end_recording(StepContext& ctx) override;
  void abort_recording(StepContext& ctx) override;

  // For the NCCL communicator (nccl_communicator.cpp): the device, made current on the calling
  // thread by use_device(), and the stream every op is queued on (a cudaStream_t).
  int device() const { return device_; }
  void use_device() const { on_device(); }
  void* cuda_stream() const { return stream(); }

 private:
  struct Prepared {
    cuda::DeviceMatrix m;
    std::string how;
  };
  void on_device() const;
  void* stream() const { return stream_->get(); }
  const Prepared& prepared(const WeightMatrix& w) const;
  // rmsnorm_for / gated_activation_for: next's uploaded matrix when the fused op may write its input
  // rotation (fusion on, n <= 16 rows of next's width, a rotating codec), else null; either way any
  // earlier mark on next is forgotten. rotated_by_op marks out as rotated for it and counts.
  const cuda::DeviceMatrix* fusable(const WeightMatrix* next, int64_t n, int64_t width);
  void rotated_by_op(const cuda::DeviceMatrix& m, const float* out, int64_t n);

  int device_;
  std::string name_;
  std::unique_ptr<cuda::Stream> stream_;
  std::unique_ptr<cuda::GemmWorkspace> gemm_;  // prompt processing: W decoded to bf16, cuBLAS
  int64_t gemm_min_tokens_ = 64;               // products of fewer tokens take the skinny path
  bool graphs_ = true;
  bool fuse_input_rotation_ = false;           // UPG_CUDA_FUSE=1: rmsnorm_for / gated_activation_for fused
  int64_t fused_input_rotations_ = 0;
  bool prompt_attention_ = true;               // UPG_CUDA_PROMPT_ATTENTION=0: every step on the decode kernel
  mutable std::mutex mu_;  // prepare() / vector() may come from several engines
  std::mutex step_mu_;     // exclusive(): one step at a time
  std::unordered_map<const WeightMatrix*, std::unique_ptr<Prepared>> mats_;
  std::unordered_map<const float*, cuda::DeviceBuffer> vecs_;
};

}  // namespace upg
