// The Backend interface: where a forward pass runs. The engine (runtime/engine.cpp) writes the decoder
// block once, as calls to these ops; each backend implements them (backend/cpu: the CPU kernels of
// kernels/cpu, backend/cuda: the CUDA kernels of kernels/cuda) on its own memory. Architectures
// never see a backend: what they describe (models/) the engine turns into these calls.
//
// Memory: every float* or void* an op takes is BACKEND memory (from allocate(), or a Buffer) unless
// its comment says host; on the CPU that is ordinary host memory (host_memory() is true), on a GPU it
// is device memory the host must not dereference. Ops are asynchronous where the backend can be
// (the CUDA backend queues them on its stream); download() and synchronize() wait for what was queued.
//
// Weights: a WeightMatrix (codecs/weight_matrix.h, any codec) is prepared once per backend with
// prepare() (the CUDA backend uploads its stored arrays, still compressed, through its table of
// codec kernels: backend/cuda/cuda_codecs.cpp); matmul() then multiplies by the prepared form.
// Norm weights and biases: vector() gives the backend's copy of a host vector.
//
// KV cache: KvCache (runtime/kv_cache.h) allocates its blocks through the backend's allocate(), so
// they live where the attention reads them. For each step the engine binds the entries' views of the
// cache (bind_kv), then per layer stores the new keys/values and attends.
//
// Several Engines (each with its own StepContext) may share a backend from several threads; a
// backend whose ops cannot interleave says so through exclusive(). One Backend instance belongs to
// one Model (Model::backend()) or is the shared CPU backend, so prepared weights live as long as the model.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "codecs/weight_matrix.h"
#include "kernels/activation_kind.h"
#include "kernels/kv_layout.h"
#include "kernels/logit_select.h"

namespace upg {

// Raw memory of a backend (what KvCache allocates its blocks from).
class BackendMemory {
 public:
  virtual ~BackendMemory() = default;
  // Uninitialised memory of `bytes` bytes (never null; throws Error when there is none left).
  virtual void* allocate(size_t bytes) = 0;
  virtual void deallocate(void* p) noexcept = 0;
  // dst <- src, both of this backend, `bytes` bytes, ordered with the backend's ops.
  virtual void copy(void* dst, const void* src, size_t bytes) = 0;
};

// Causal attention of one layer (kernels/cpu/attention.h has the maths).
struct AttentionSpec {
  int64_t n_heads, n_kv_heads, head_dim;
  int64_t window = 0;  // 0 = full causal
  float scale = 1;
  float softcap = 0;   // > 0: scores soft-capped
  // > 0: multi-head latent attention's cache: one row per position (n_kv_heads 1, no value rows), the
  // values its first value_dim columns; out has value_dim values per head.
  int64_t value_dim = 0;
};

// What one Engine keeps on a backend between the ops of a step (the bound cache views, index
// tables, workspaces), so that several Engines may share one backend. Made by Backend::new_context.
class StepContext {
 public:
  virtual ~StepContext() = default;
};

class Backend : public BackendMemory {
 public:
  virtual std::unique_ptr<StepContext> new_context() = 0;
  // Held by Engine::step for the whole step: backends whose ops are not safe to run from two
  // threads at once (the CUDA backend: one stream, per-matrix scratch) lock here; the CPU does not.
  virtual std::unique_lock<std::mutex> exclusive() { return {}; }
  // "cpu (avx512)", "cuda:0 (NVIDIA H200, 132 SMs, ...)".
  virtual std::string name() const = 0;
  // True when backend memory is host memory (the engine may then read and write it directly: the
  // calibration observer, mixture-of-experts routing and multi-head latent attention need that).
  virtual bool host_memory() const = 0;
  // Bytes of the backend's own memory in use (device memory on a GPU; 0 on the CPU).
  virtual size_t memory_in_use() const = 0;
  // Waits for every queued op.
  virtual void synchronize() = 0;
  // The memory bandwidth this backend's ops can stream at, measured now, in bytes/s (the roofline
  // `upg bench` quotes): the CPU's read bandwidth over 1 GiB with every thread; a GPU's device-to-
  // device copy of 1 GiB, bytes read plus bytes written.
  virtual double measure_bandwidth() = 0;

  // Host <-> backend copies (synchronous).
  virtual void upload(void* dst, const void* host, size_t bytes) = 0;
  virtual void download(void* host, const void* src, size_t bytes) = 0;

  // ---- Weights ---------------------------------------------------------------------------------
  // Makes w ready for matmul on this backend (idempotent; w must outlive the backend's use of it).
  virtual void prepare(const WeightMatrix& w) = 0;
  // How the backend holds w after prepare ("codebook3-tiles", "bf16-tiles (decoded mdcsr)"; the
  // CPU: the codec's name), and the bytes it holds for it on the device (0 on the CPU).
  virtual std::string layout(const WeightMatrix& w) const = 0;
  // y (n x w.rows()) = x (n x w.cols()) w^T; w must have been prepared.
  virtual void matmul(const WeightMatrix& w, const float* x, int64_t n, float* y) = 0;
  // y (n x w.rows()) += x w^T: a projection added straight into the residual stream.
  virtual void matmul_add(const WeightMatrix& w, const float* x, int64_t n, float* y) = 0;
  // out (tokens.size() x w.cols()) = rows tokens[i] of w (tokens: host). w need not be prepared.
  virtual void embed(StepContext& ctx, const WeightMatrix& w, std::span<const int32_t> tokens, float* out) = 0;
  // The backend's copy of a host vector (norm weights, biases); made on first use and kept (keyed
  // by v's data pointer: v must not change or move while the backend uses it).
  virtual const float* vector(const std::vector<float>& v) = 0;

  // ---- Elementwise and normalisation (kernels/cpu has the maths) ------------------------------
  // out = weight * x * rsqrt(mean(x^2) + eps) per row of dim values; out may alias x.
  virtual void rmsnorm(const float* x, const float* weight, int64_t rows, int64_t dim, float eps, float* out) = 0;
  // Rotate-half RoPE in place on x (n x heads x head_dim); cos, sin: n x rotary_dim/2.
  virtual void rope(float* x, int64_t n, int64_t heads, int64_t head_dim, int64_t rotary_dim, const float* cos,
                    const float* sin) = 0;
  // out (n x width) = act(gate) * up, where row t of gate_up is [gate (width) | up (width)].
  virtual void gated_activation(Activation act, const float* gate_up, int64_t n, int64_t width, float* out) = 0;
  // rmsnorm and gated_activation whose out is next multiplied by `next` (matmul or matmul_add of next on
  // out, n rows, with no op writing out in between; next null: not known). A backend may prepare that
  // product's input in the same pass (CUDA: the rotation of a rotated codec). The defaults are the
  // plain ops.
  virtual void rmsnorm_for(const WeightMatrix* next, const float* x, const float* weight, int64_t rows, int64_t dim,
                           float eps, float* out) {
    (void)next;
    rmsnorm(x, weight, rows, dim, eps, out);
  }
  virtual void gated_activation_for(const WeightMatrix* next, Activation act, const float* gate_up, int64_t n,
                                    int64_t width, float* out) {
    (void)next;
    gated_activation(act, gate_up, n, width, out);
  }
  // y[r * ld + c] += bias[c], r < rows, c < width.
  virtual void add_bias(float* y, const float* bias, int64_t rows, int64_t width, int64_t ld) = 0;
  virtual void add(float* x, const float* y, int64_t count) = 0;  // x += y
  virtual void scale(float* x, int64_t count, float s) = 0;
  virtual void softcap(float* x, int64_t count, float cap) = 0;   // x = cap * tanh(x / cap)
  // dst[r * dst_ld + c] = src[r * src_ld + c], c < width.
  virtual void copy_columns(float* dst, int64_t dst_ld, const float* src, int64_t src_ld, int64_t rows,
                            int64_t width) = 0;
  // dst row i (width values) = src row rows[i] (rows: host).
  virtual void gather_rows(StepContext& ctx, float* dst, const float* src, std::span<const int32_t> rows,
                           int64_t width) = 0;
  // dst row rows[i] += weights[i] * src row i (width values), i < rows.size() (rows, weights: host;
  // rows distinct): the weighted sum of mixture-of-experts outputs.
  virtual void add_weighted_rows(StepContext& ctx, float* dst, const float* src, std::span<const int32_t> rows,
                                 std::span<const float> weights, int64_t width) = 0;
  virtual void fill(float* x, int64_t count, float v) = 0;  // x[i] = v
  // In each of `segments` runs of width values (x + s * ld), pairs (x0, x1), (x2, x3), ... become the
  // halves [x0 x2 ... | x1 x3 ...] (the layout rotate-half RoPE takes; width even).
  virtual void deinterleave_pairs(float* x, int64_t segments, int64_t ld, int64_t width) = 0;
  // Per token t < n and head h < heads, with W_h = w + h * rows * cols (rows x cols, row-major; w from
  // vector()): y[(t heads + h) y_ld ...] = W_h^T x (cols values from rows) when transpose, else W_h x
  // (rows values from cols), x at x + (t heads + h) x_ld (multi-head latent attention's absorbed
  // up-projections).
  virtual void head_products(const float* w, bool transpose, int64_t heads, int64_t rows, int64_t cols,
                             const float* x, int64_t x_ld, int64_t n, float* y, int64_t y_ld) = 0;

  // ---- Sampling (kernels/logit_select.h has the maths) -----------------------------------------
  // The penalties (host) applied in place to the logits rows (ld apart) they name.
  virtual void penalize_logits(StepContext& ctx, float* logits, int64_t ld, std::span<const LogitPenalty> penalties) = 0;
  // kernels::top_logits of the rows `rows` (host) of logits into host memory: ids and values
  // (rows.size() x k), sum_exp (rows.size(), or null: not computed); returns when they are there.
  virtual void top_logits(StepContext& ctx, const float* logits, int64_t ld, std::span<const int32_t> rows,
                          int64_t vocab, int k, int32_t* ids, float* values, double* sum_exp) = 0;

  // ---- KV cache and attention ------------------------------------------------------------------
  // The step's entries: layer0[t] is entry t's view of layer 0 of its sequence's blocks (blocks of
  // this backend's memory; KvCache::view), blocks[t] how many blocks that view holds, pos[t] the
  // entry's position; layer l's rows are layer_stride * l bytes further into each block. Valid until
  // the next bind_kv (the views' block arrays must stay unchanged until then).
  virtual void bind_kv(StepContext& ctx, std::span<const KvLayerView> layer0, std::span<const int64_t> blocks,
                       std::span<const int64_t> pos, size_t layer_stride) = 0;
  // Writes row (kv_index: 0 keys, 1 values, head g, the entry's position) of layer `layer` for every
  // bound entry t and kv head g < n_kv_heads from x[t * ld + g * head_dim ...].
  virtual void store_kv(StepContext& ctx, int64_t layer, int kv_index, const float* x, int64_t ld,
                        int64_t n_kv_heads) = 0;
  // The attention inputs of layer `layer` from the fused projection: row t of qkv (ld wide) is
  // [q: n_heads | k: n_kv_heads | v: n_kv_heads heads of head_dim] for bound entry t (n of them);
  // q_out (n x n_heads x head_dim) = RoPE(q), and RoPE(k) and v are stored in the cache as store_kv
  // does. The default does it with copy_columns, rope and store_kv, using k_scratch (n x n_kv_heads x
  // head_dim floats of backend memory); the CUDA backend in one launch.
  virtual void attention_input(StepContext& ctx, int64_t layer, const float* qkv, int64_t ld, int64_t n,
                               int64_t n_heads, int64_t n_kv_heads, int64_t head_dim, int64_t rotary_dim,
                               const float* cos, const float* sin, float* q_out, float* k_scratch);
  // out (entries x n_heads x head_dim, or value_dim) = each entry's attention over its sequence's rows
  // [lo, pos] of layer `layer`; q: entries x n_heads x head_dim.
  virtual void attention(StepContext& ctx, int64_t layer, const AttentionSpec& s, const float* q, float* out) = 0;

  // ---- Recorded steps (optional) ---------------------------------------------------------------
  // A backend may record the ops queued between begin_recording and end_recording and replay them
  // later with one launch (the CUDA backend: a CUDA graph); the engine does so for the layer loop of
  // small steps. `key` names what the recorded ops depend on that the engine knows (the number of
  // entries, the addresses of its buffers); the backend adds what it keeps itself (the bound cache
  // table's address and shape, workspaces). replay() runs the recording of that key when there is
  // one and returns true. Otherwise begin_recording() says whether the ops from now on are recorded
  // rather than run; end_recording() then runs them and returns true, or returns false when the
  // recording failed and nothing ran (the engine runs the ops itself); abort_recording() drops a
  // recording after an exception. The defaults record nothing.
  virtual bool replay(StepContext& ctx, std::span<const uint64_t> key) { return false; }
  virtual bool begin_recording(StepContext& ctx, std::span<const uint64_t> key) { return false; }
  virtual bool end_recording(StepContext& ctx) { return true; }
  virtual void abort_recording(StepContext& ctx) {}
};

// Backend memory of one buffer, RAII; resize() keeps nothing.
class Buffer {
 public:
  Buffer() = default;
  explicit Buffer(BackendMemory& m) : m_(&m) {}
  ~Buffer() { release(); }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  // At least `count` floats (grows only).
  void resize(size_t count) {
    if (count <= count_) return;
    release();
    p_ = m_->allocate(count * sizeof(float));
    count_ = count;
  }
  float* data() const { return static_cast<float*>(p_); }
  size_t size() const { return count_; }

 private:
  void release() {
    if (p_) m_->deallocate(p_);
    p_ = nullptr, count_ = 0;
  }
  BackendMemory* m_ = nullptr;
  void* p_ = nullptr;
  size_t count_ = 0;
};

// The CPU backend (backend/cpu): no state of its own, one instance shared by every model that runs on the CPU.
std::shared_ptr<Backend> cpu_backend();

// The backend for a --device value: "cpu", "cuda", "cuda:N", or "auto" (the first CUDA device when
// there is one, else the CPU). Throws Error naming the value when it is unknown, when this build has
// no CUDA backend (built without nvcc) or when there is no such device (with the driver's reason).
std::shared_ptr<Backend> make_backend(const std::string& device);

}  // namespace upg
