// Host API of the CUDA kernels (library upg_cuda, built when CMake option UPG_CUDA is on): plain C++,
// no CUDA types, so code compiled by g++ calls it. Every pointer argument of an op is a DEVICE pointer
// (from DeviceBuffer) unless its comment says host; `stream` is a cudaStream_t passed as void*
// (nullptr = the default stream). Ops are asynchronous on their stream. A failing CUDA call throws
// upg::Error naming the call and giving cudaGetErrorString's text.
//
// Activations are fp32 on the device (as on the CPU); matrix products read weights in their stored,
// compressed form (uploaded once, repacked into a GPU layout: src/kernels/cuda/gemv_layout.cu) and
// compute with bf16 tensor-core MMAs and fp32 accumulation.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "kernels/activation_kind.h"
#include "kernels/logit_select.h"

namespace upg::cuda {

// Number of CUDA devices; 0 when there is none or the driver/runtime cannot be used (then *why, if
// given, says what cudaGetDeviceCount returned).
int device_count(std::string* why = nullptr);
// "NVIDIA H200, 132 SMs, 143 GB, cc 9.0" for device `dev`.
std::string device_name(int dev = 0);
void set_device(int dev);
void synchronize();  // cudaDeviceSynchronize
// Bytes of device memory in use (total - free), for reports.
size_t memory_in_use();

// Device memory, RAII (cudaMalloc / cudaFree), move-only.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t bytes);
  ~DeviceBuffer();
  DeviceBuffer(DeviceBuffer&& o) noexcept : p_(o.p_), n_(o.n_) { o.p_ = nullptr, o.n_ = 0; }
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  void* data() const { return p_; }
  template <class T>
  T* as() const { return static_cast<T*>(p_); }
  size_t size() const { return n_; }
  // Synchronous copies (host memory given); bytes <= size().
  void upload(const void* host, size_t bytes, size_t offset = 0);
  void download(void* host, size_t bytes, size_t offset = 0) const;
  void fill_bytes(int value);  // cudaMemset over the whole buffer

 private:
  void* p_ = nullptr;
  size_t n_ = 0;
};

// A stream of its own (cudaStreamNonBlocking), RAII.
class Stream {
 public:
  Stream();
  ~Stream();
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  void* get() const { return s_; }
  void synchronize();

 private:
  void* s_ = nullptr;
};

// Work recorded from a stream (a CUDA graph) and replayed on it with one launch; move-only. Between
// begin_capture and end_capture, ops queued on the stream are recorded, not run; end_capture returns
// the instantiated graph, or an invalid one (and *why) when the capture failed.
class Graph {
 public:
  Graph();
  ~Graph();
  Graph(Graph&& o) noexcept;
  Graph& operator=(Graph&& o) noexcept;
  Graph(const Graph&) = delete;
  Graph& operator=(const Graph&) = delete;
  static void begin_capture(void* stream);
  static Graph end_capture(void* stream, std::string* why = nullptr);
  bool valid() const { return impl_ != nullptr; }
  void launch(void* stream) const;
  size_t nodes() const;  // kernels, copies and memsets recorded

 private:
  struct Impl;
  Impl* impl_ = nullptr;
};

// ---- Weight matrices -------------------------------------------------------------------------
// Host arrays exactly as a codec stores them (docs/CODECS.md), little-endian, any alignment.
struct RotateParams {
  bool on = false;
  uint64_t seed = 0;
  int64_t block = 1;  // power of two dividing cols
  int64_t first = 0;  // the signs of columns first .. first + cols - 1 (a tensor-parallel slice)
};
struct CodebookHost {
  const uint8_t* qweight;   // U8 [rows, ceil(cols*bits/8)]
  const uint8_t* scales;    // F16 [rows, ceil(cols/group)]
  const uint8_t* codebook;  // F32 [ceil(rows/CB), 2^bits]
  int64_t rows, cols;
  int bits, group;          // bits 1..8, group a multiple of 8
  int64_t codebook_rows;    // CB; 0 = the whole tensor
  RotateParams rotate;
};
struct Int8Host {
  const uint8_t* qweight;   // I8 [rows, cols]
  const uint8_t* scales;    // F16 or F32 [rows, ceil(cols/G)]
  bool f16_scales;
  int64_t rows, cols;
  int64_t group;            // 0 = one scale per row
  RotateParams rotate;
};
struct TrellisHost {
  const uint8_t* qweight;   // U8 [rows, ceil((L + (cols - 1) K) / 8)]: each row's bit stream, MSB first
  const uint8_t* scales;    // F16 [rows, ceil(cols/group)]
  int64_t rows, cols;
  int bits, state_bits, group;  // K 1..5, L K+1..16, group a multiple of 8
  RotateParams rotate;
};
struct DenseHost {
  const uint8_t* data;      // [rows, cols] of BF16, F16 or F32
  int dtype;                // 0 = bf16, 1 = f16, 2 = f32
  int64_t rows, cols;
};

// What a product of many tokens needs (gemm_dequant.cu): cuBLAS (opened at run time), a scratch for
// one block of W decoded to bf16 (weight_bytes; the rows of W are decoded a block at a time) and the
// activations in bf16. One per stream; one product at a time.
class GemmWorkspace {
 public:
  explicit GemmWorkspace(size_t weight_bytes = size_t{64} << 20);
  ~GemmWorkspace();
  GemmWorkspace(const GemmWorkspace&) = delete;
  GemmWorkspace& operator=(const GemmWorkspace&) = delete;
  bool available() const;       // cuBLAS was opened and a handle made
  std::string why_not() const;  // when not available: why
  size_t device_bytes() const;  // scratch allocated so far
  // The tile decoder's launch shape: each warp decodes row_tiles x slices tiles of 16 x 256 weights
  // (0: the default, 1 x 1, or UPG_CUDA_DEQUANT_TPB / UPG_CUDA_DEQUANT_SPW). For tests and experiments.
  void set_decode_shape(int row_tiles, int slices) { decode_tpb_ = row_tiles, decode_spw_ = slices; }
  struct Impl;

 private:
  friend class DeviceMatrix;
  Impl* impl_;
  size_t weight_bytes_;
  int decode_tpb_ = 0, decode_spw_ = 0;
};

// One uploaded weight matrix W (rows x cols); matmul computes y (n x rows) = x (n x cols) W^T: for
// n = 1..16 with the skinny GEMM straight from the packed tiles; for larger n, given an available
// GemmWorkspace and n >= gemm_min_tokens, as a cuBLAS GEMM over W decoded to bf16 a block of rows at
// a time, else looped over chunks of 16 rows of x.
class DeviceMatrix {
 public:
  static DeviceMatrix upload(const CodebookHost& w);
  static DeviceMatrix upload(const Int8Host& w);
  static DeviceMatrix upload(const TrellisHost& w);
  static DeviceMatrix upload(const DenseHost& w);
  DeviceMatrix();
  ~DeviceMatrix();
  DeviceMatrix(DeviceMatrix&&) noexcept;
  DeviceMatrix& operator=(DeviceMatrix&&) noexcept;

  // A second copy on the device (benchmarks rotate over copies to defeat the L2 cache).
  DeviceMatrix clone() const;

  int64_t rows() const;
  int64_t cols() const;
  // "codebook3-tiles", "int8-tiles", "trellis3-rows", "bf16-tiles", or "bf16-tiles (decoded ...)" when the codec's
  // params fall outside what the packed kernel takes and the matrix was decoded to bf16 at upload.
  std::string layout() const;
  size_t device_bytes() const;  // weight bytes held on the device
  // x: n x cols fp32, y: n x rows fp32 (overwritten). Uses this matrix's scratch (one op at a time
  // per matrix). Rotated codecs rotate x (fast Walsh-Hadamard transform) before the product.
  void matmul(const float* x, int64_t n, float* y, void* stream = nullptr, GemmWorkspace* gemm = nullptr,
              int64_t gemm_min_tokens = 64) const;
  // y += x W^T (the residual stream: no separate add, no zeroing).
  void matmul_add(const float* x, int64_t n, float* y, void* stream = nullptr, GemmWorkspace* gemm = nullptr,
                  int64_t gemm_min_tokens = 64) const;
  // The two stages of matmul, for timing: rotate x into the matrix's scratch when the codec rotates
  // (else remember x); then the product from it.
  void prepare(const float* x, int64_t n, void* stream = nullptr) const;
  void multiply_prepared(int64_t n, float* y, void* stream = nullptr) const;

  // For the ops that make a matmul's input and rotate it in the same pass (rmsnorm_rotate,
  // gated_rows_rotate): where x R goes for this matrix (n <= 16 rows), and the signs and block of R;
  // signs is null when the codec does not rotate.
  struct InputRotation {
    const float* signs = nullptr;
    int64_t block = 0;
    float* xrot = nullptr;
  };
  InputRotation input_rotation() const;
  // x (n <= 16 rows) has been written rotated into input_rotation().xrot (queued on the stream): the
  // next product by this matrix on x with n rows takes it from there instead of rotating x again.
  // Any product forgets it; x must not change in between. x null: forget it now.
  void input_rotated(const float* x, int64_t n) const;

  struct Impl;

 private:
  Impl* impl_ = nullptr;
};

// ---- Elementwise and normalisation (same maths as kernels/cpu) ---------------------------------
// out = weight * x * rsqrt(mean(x^2) + eps), rows x dim; out may alias x.
void rmsnorm(const float* x, const float* weight, int64_t rows, int64_t dim, float eps, float* out,
             void* stream = nullptr);
// rmsnorm (out must not alias x) that also writes out R (sign flip, then the Walsh-Hadamard transform of
// each block of `block` columns, as hadamard_rotate) to xrot, in one kernel: the same bits as rmsnorm then
// hadamard_rotate. Returns false, having done nothing, where it does not apply (dim not a multiple of 4
// or of block, pointers not 16-byte aligned, out == x): then call the two.
bool rmsnorm_rotate(const float* x, const float* weight, int64_t rows, int64_t dim, float eps, float* out,
                    const float* signs, int64_t block, float* xrot, void* stream = nullptr);
// Rotary embedding, rotate-half convention, in place on x (n_tokens x n_heads x head_dim); cos, sin:
// n_tokens x rotary_dim/2 (kernels/cpu/rope.h).
void rope(float* x, int64_t n_tokens, int64_t n_heads, int64_t head_dim, int64_t rotary_dim,
          const float* cos, const float* sin, void* stream = nullptr);
// out = up * silu(gate) / up * gelu_tanh(gate); out may alias gate or up.
void silu_mul(const float* gate, const float* up, float* out, int64_t n, void* stream = nullptr);
void gelu_tanh_mul(const float* gate, const float* up, float* out, int64_t n, void* stream = nullptr);
// out (n x width) = act(gate) * up, row t of gate_up being [gate (width) | up (width)]: silu,
// gelu-tanh, or gelu with erf (kernels/cpu/activation.h).
void gated_rows(Activation act, const float* gate_up, int64_t n, int64_t width, float* out, void* stream = nullptr);
// gated_rows that also writes out R to xrot (as rmsnorm_rotate): the same bits as gated_rows then
// hadamard_rotate. Returns false, having done nothing, when out overlaps gate_up or block does not
// divide width.
bool gated_rows_rotate(Activation act, const float* gate_up, int64_t n, int64_t width, float* out, const float* signs,
                       int64_t block, float* xrot, void* stream = nullptr);
// out (n x cols) = x R: sign flip by signs (device, cols values of +-1), then the orthonormal
// Walsh-Hadamard transform of each block of `block` columns (codecs/compose.h). out may alias x.
void hadamard_rotate(const float* x, float* out, int64_t n, int64_t cols, const float* signs, int64_t block,
                     void* stream = nullptr);
// y[r * ld + c] += bias[c] for r < rows, c < width (ld >= width).
void add_bias(float* y, const float* bias, int64_t rows, int64_t width, int64_t ld, void* stream = nullptr);
// x[i] += y[i] (residual add); x[i] *= s; x[i] = cap * tanh(x[i] / cap) (kernels::softcap).
void add(float* x, const float* y, int64_t n, void* stream = nullptr);
void scale(float* x, int64_t n, float s, void* stream = nullptr);
void softcap(float* x, int64_t n, float cap, void* stream = nullptr);
// dst[r * dst_ld + c] = src[r * src_ld + c] for r < rows, c < width (ld >= width); columns of dst past
// width are left as they are.
void copy_columns(float* dst, int64_t dst_ld, const float* src, int64_t src_ld, int64_t rows, int64_t width,
                  void* stream = nullptr);
// dst[i * width + c] = src[rows[i] * width + c] for i < n, c < width; rows: device, n int32.
void gather_rows(float* dst, const float* src, const int32_t* rows, int64_t n, int64_t width, void* stream = nullptr);
// dst[rows[i] * width + c] += weights[i] * src[i * width + c] for i < n, c < width (rows distinct;
// rows, weights: device, n values each).
void add_weighted_rows(float* dst, const float* src, const int32_t* rows, const float* weights, int64_t n,
                       int64_t width, void* stream = nullptr);
// x[i] = v for i < n.
void fill(float* x, int64_t n, float v, void* stream = nullptr);

// ---- Sampling (logit_select.cu; the maths in kernels/logit_select.h) ------------------------------
// logits[p.row * ld + p.token] = penalized(that, p) for each of the n penalties (device array).
void penalize_logits(float* logits, int64_t ld, const LogitPenalty* penalties, int64_t n, void* stream = nullptr);
// kernels::top_logits on the device: rows (device, nrows int32), ids and values (nrows x k) and
// sum_exp (nrows) device arrays. The same ids and values as the reference; sum_exp to rounding.
void top_logits(const float* logits, int64_t ld, const int32_t* rows, int64_t nrows, int64_t vocab, int k,
                int32_t* ids, float* values, double* sum_exp, void* stream = nullptr);

// ---- The paged bf16 KV cache (kernels/kv_layout.h) ---------------------------------------------
// A table of block pointers with one row per entry (an entry: one query token, or one token to
// store): blocks[s * max_blocks + i] (a device pointer, in a device array) is the block holding
// positions [i*block_size, (i+1)*block_size) of entry s's sequence, as in KvLayerView::blocks. Several
// entries may belong to the same sequence (prefill: one entry per token), their rows of the table then
// equal. Inside a block, rows follow KvLayerView: row (kv, head, pos) at
//   blocks[s * max_blocks + pos / block_size] + layer_offset + kv * kv_offset + head * head_stride
//   + (pos % block_size) * row_bytes,
// row_bytes = 2 * head_dim (bf16); rows must be 4-byte aligned (head_dim even, aligned offsets).
struct PagedKv {
  const uint8_t* const* blocks;  // device, nseq x max_blocks device pointers
  int64_t max_blocks;
  int64_t block_size, head_dim;
  size_t row_bytes, head_stride, kv_offset, layer_offset;
};
// Stores keys (kv_index 0) or values (1): for entry t < n and kv head g < n_kv_heads, row
// (kv_index, g, pos[t]) of entry t (row t of the table) = x[t * ld + g * head_dim + i], i < head_dim,
// rounded to bf16 bit for bit as kernels::kv_store_row(KvType::BF16) does (round-to-nearest-even; a
// NaN keeps its sign and top payload bits, made quiet). pos: device, n int32. The blocks are written
// (const in PagedKv only because attention reads them).
void kv_store_bf16(const PagedKv& kv, int kv_index, const float* x, int64_t ld, const int32_t* pos, int64_t n,
                   int64_t n_kv_heads, void* stream = nullptr);

// The attention inputs of one layer from the fused q/k/v projection: row t of qkv (ld >= (n_heads + 2
// n_kv_heads) * head_dim) is [q heads | k heads | v heads]; q_out (n x n_heads x head_dim) = rope(q);
// the keys rope(k) and the values v are stored at pos[t] in bf16 (the same bytes as kv_store_bf16).
// One launch for what rope + kv_store_bf16 (twice each) and two column copies do.
void attention_input(const PagedKv& kv, const float* qkv, int64_t ld, const int32_t* pos, int64_t n, int64_t n_heads,
                     int64_t n_kv_heads, int64_t head_dim, int64_t rotary_dim, const float* cos, const float* sin,
                     float* q_out, void* stream = nullptr);

// ---- Decode attention over the paged bf16 KV cache ---------------------------------------------
struct AttentionParams {
  int64_t n_heads, n_kv_heads, head_dim;
  int64_t window = 0;    // 0 = full causal
  float scale;
  float softcap = 0;     // > 0: scores soft-capped before the softmax
};
// One query token per entry of the table (kv.blocks has nseq rows): q (nseq x n_heads x head_dim,
// fp32), pos (device, nseq int32: the query's position; it attends to [lo, pos] of its entry's
// sequence), out (nseq x n_heads x head_dim). Entries may share a sequence (the query tokens of one
// prompt, each at its own pos). Long contexts are split over the positions (FlashDecoding) into chunks
// merged by a second kernel; `workspace` must hold decode_attention_workspace(...) bytes (may be null
// when that is 0). max_pos bounds every pos.
size_t decode_attention_workspace(const AttentionParams& p, int64_t nseq, int64_t max_pos);
// How many chunks the positions are split into for this max_pos (it changes every 256 positions).
int decode_attention_splits(int64_t max_pos);
void decode_attention(const AttentionParams& p, const PagedKv& kv, const float* q, const int32_t* pos,
                      int64_t nseq, int64_t max_pos, float* out, void* workspace, void* stream = nullptr);

// ---- Multi-head latent attention (attention_latent.cu) ------------------------------------------
// Attention over one latent row per position (p.n_kv_heads == 1, rows of p.head_dim bf16 values in the
// keys part of the cache) whose first value_dim columns are also the values (AttentionShape::value_dim):
// q (nseq x n_heads x head_dim), out (nseq x n_heads x value_dim); otherwise as decode_attention.
// value_dim <= 512.
void latent_attention(const AttentionParams& p, int64_t value_dim, const PagedKv& kv, const float* q,
                      const int32_t* pos, int64_t nseq, float* out, void* stream = nullptr);
// For token t < n and head h < heads, W_h = w + h * rows * cols (rows x cols, row-major, fp32, device):
// transpose: y[(t heads + h) y_ld + j] = sum_i W_h[i][j] x[(t heads + h) x_ld + i] (j < cols, i < rows);
// else       y[(t heads + h) y_ld + i] = sum_j W_h[i][j] x[(t heads + h) x_ld + j] (i < rows, j < cols).
// The input of one head (rows or cols values) at most 12284.
void head_products(const float* w, bool transpose, int64_t heads, int64_t rows, int64_t cols, const float* x,
                   int64_t x_ld, int64_t n, float* y, int64_t y_ld, void* stream = nullptr);
// In each of `segments` runs of width values (x + s * ld), pairs (x0, x1), (x2, x3), ... become the
// halves [x0 x2 ... | x1 x3 ...] (width even, at most 1024).
void deinterleave_pairs(float* x, int64_t segments, int64_t ld, int64_t width, void* stream = nullptr);

// ---- Prompt attention on tensor cores (attention_prompt.cu) ------------------------------------
// The same result as decode_attention (to fp32 rounding: Q and the softmax weights go to the tensor
// cores as two bf16 terms each) for entries that come in runs of one sequence (a prompt's tokens): each
// tile of up to kPromptTileTokens entries sharing one row of the block table reads every K and V row
// once for all its tokens and all the query heads of a kv head.
constexpr int kPromptTileTokens = 16;
// The tiles, from the host copy of the table (entries x max_blocks pointers): (first entry, count)
// pairs, consecutive entries with equal table rows grouped; empty when some block pointer is not
// 16-byte aligned (then use decode_attention).
std::vector<int32_t> prompt_attention_tiles(const uint8_t* const* table_host, int64_t entries, int64_t max_blocks);
// head_dim a multiple of 16 up to 128, groups of at most 8 query heads, 16-byte aligned row offsets.
bool prompt_attention_supported(const AttentionParams& p, const PagedKv& kv);
// How many ranges the positions are split into (<= decode_attention_splits(max_pos), so the workspace
// is decode_attention_workspace(p, nseq, max_pos)); it depends on ntiles and max_pos only.
int prompt_attention_splits(const AttentionParams& p, int64_t ntiles, int64_t max_pos);
// tiles: device, ntiles (first, count) int32 pairs covering entries 0 .. nseq - 1; the rest as
// decode_attention.
void prompt_attention(const AttentionParams& p, const PagedKv& kv, const float* q, const int32_t* pos,
                      const int32_t* tiles, int64_t ntiles, int64_t nseq, int64_t max_pos, float* out, void* workspace,
                      void* stream = nullptr);

}  // namespace upg::cuda
