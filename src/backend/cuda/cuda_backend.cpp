#include "backend/cuda/cuda_backend.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>

#include "backend/cuda/cuda_codecs.h"
#include "base/error.h"
#include "kernels/cuda/cuda_memory.h"

namespace upg {

namespace {

// Grows `b` to hold at least `bytes`.
void reserve(cuda::DeviceBuffer& b, size_t bytes) {
  if (b.size() < bytes) b = cuda::DeviceBuffer(std::max(bytes, 2 * b.size()));
}

// The block table's width grows in whole multiples of this many blocks, so that a recorded step stays
// valid while a sequence grows (kernels take the width as an argument).
constexpr int64_t kTableGrain = 16;
constexpr size_t kMaxGraphs = 32, kMaxSeen = 256;

// One Engine's step on the device: the entries' block table (device pointers), positions, the
// attention workspace, staging for embeddings and row indices, and the recorded layer loops.
struct CudaStep : StepContext {
  int64_t entries = 0, max_blocks = 0, max_pos = 0;
  KvLayerView geom{};
  size_t layer_stride = 0;
  cuda::DeviceBuffer table, pos, rows, weights, workspace, tiles;
  cuda::DeviceBuffer penalties, top_rows, top_out;  // sampling (logit_select.cu)
  std::vector<uint8_t> top_host;
  std::vector<const uint8_t*> table_host;
  std::vector<int32_t> pos_host, tiles_host;  // tiles: cuda::prompt_attention_tiles of the table
  // The prompt kernel when the entries come in runs of one sequence (2+ tokens a tile on average).
  bool prompt_tiles() const { return !tiles_host.empty() && entries >= static_cast<int64_t>(tiles_host.size()); }
  int64_t ntiles() const { return static_cast<int64_t>(tiles_host.size() / 2); }
  std::vector<float> embed_host;
  std::map<std::vector<uint64_t>, cuda::Graph> graphs;  // full key -> recorded layer loop
  std::map<std::vector<uint64_t>, int> seen;            // full key -> times run without a graph
  std::vector<uint64_t> recording;                      // the key being recorded (empty: none)
  cuda::PagedKv paged(int64_t layer) const {
    return cuda::PagedKv{table.as<const uint8_t* const>(), max_blocks, geom.block_size, geom.head_dim,
                         geom.row_bytes, geom.head_stride, geom.kv_offset,
                         geom.layer_offset + static_cast<size_t>(layer) * layer_stride};
  }
};

}  // namespace

CudaBackend::CudaBackend(int device) : device_(device) {
  std::string why;
  const int n = cuda::device_count(&why);
  UPG_CHECK(n > 0, "--device cuda:", device, ": no CUDA device can be used (", why,
            "): is there an NVIDIA GPU, with its driver installed?");
  UPG_CHECK(device >= 0 && device < n, "--device cuda:", device, ": this machine has ", n, " CUDA device",
            n == 1 ? "" : "s", " (cuda:0", n > 1 ? str_cat(" .. cuda:", n - 1) : std::string(), ")");
  on_device();
  name_ = str_cat("cuda:", device, " (", cuda::device_name(device), ")");
  stream_ = std::make_unique<cuda::Stream>();
  size_t scratch = size_t{64} << 20;  // bf16 rows decoded per cuBLAS product (UPG_CUDA_GEMM_SCRATCH_MB)
  if (const char* e = std::getenv("UPG_CUDA_GEMM_SCRATCH_MB")) scratch = static_cast<size_t>(std::max(1L, std::atol(e))) << 20;
  gemm_ = std::make_unique<cuda::GemmWorkspace>(scratch);
  if (!gemm_->available())
    std::fprintf(stderr, "upg: %s: %s; prompts take the slower matrix-vector path\n", name_.c_str(),
                 gemm_->why_not().c_str());
  if (const char* e = std::getenv("UPG_CUDA_GRAPHS")) graphs_ = std::string(e) != "0";
  if (const char* e = std::getenv("UPG_CUDA_PROMPT_ATTENTION")) prompt_attention_ = std::string(e) != "0";
  if (const char* e = std::getenv("UPG_CUDA_FUSE")) fuse_input_rotation_ = std::string(e) == "1";
  if (const char* e = std::getenv("UPG_CUDA_GEMM_MIN_TOKENS")) gemm_min_tokens_ = std::max(17L, std::atol(e));
}

CudaBackend::~CudaBackend() {
  try {
    on_device();
    stream_->synchronize();
  } catch (...) {
  }
}

void CudaBackend::on_device() const {
  thread_local int current = -1;  // the runtime's current device is per host thread
  if (current != device_) {
    cuda::set_device(device_);
    current = device_;
  }
}

size_t CudaBackend::memory_in_use() const {
  on_device();
  return cuda::memory_in_use();
}

void CudaBackend::synchronize() {
  on_device();
  stream_->synchronize();
}

double CudaBackend::measure_bandwidth() {
  on_device();
  return cuda::measure_copy_bandwidth(stream());
}

void* CudaBackend::allocate(size_t bytes) {
  on_device();
  return cuda::device_malloc(bytes);
}

void CudaBackend::deallocate(void* p) noexcept {
  try {
    on_device();
  } catch (...) {
  }
  cuda::device_free(p);
}

void CudaBackend::copy(void* dst, const void* src, size_t bytes) { cuda::copy_device(dst, src, bytes, stream()); }
void CudaBackend::upload(void* dst, const void* host, size_t bytes) { cuda::copy_to_device(dst, host, bytes, stream()); }
void CudaBackend::download(void* host, const void* src, size_t bytes) { cuda::copy_to_host(host, src, bytes, stream()); }

void CudaBackend::prepare(const WeightMatrix& w) {
  std::lock_guard<std::mutex> lock(mu_);
  if (mats_.count(&w)) return;
  on_device();
  auto p = std::make_unique<Prepared>();
  p->m = cuda_upload(w, &p->how);
  mats_.emplace(&w, std::move(p));
}

const CudaBackend::Prepared& CudaBackend::prepared(const WeightMatrix& w) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = mats_.find(&w);
  UPG_CHECK(it != mats_.end(), "cuda: a ", w.rows(), " x ", w.cols(), " ", w.codec(),
            " matrix was not prepared before use");
  return *it->second;
}

std::string CudaBackend::layout(const WeightMatrix& w) const { return prepared(w).how; }

void CudaBackend::matmul(const WeightMatrix& w, const float* x, int64_t n, float* y) {
  prepared(w).m.matmul(x, n, y, stream(), gemm_.get(), gemm_min_tokens_);
}

void CudaBackend::matmul_add(const WeightMatrix& w, const float* x, int64_t n, float* y) {
  prepared(w).m.matmul_add(x, n, y, stream(), gemm_.get(), gemm_min_tokens_);
}

void CudaBackend::embed(StepContext& ctx, const WeightMatrix& w, std::span<const int32_t> tokens, float* out) {
  // A few rows: decoded on the host by the codec, then copied (the embedding itself stays on the host
  // unless the LM head shares it).
  CudaStep& c = static_cast<CudaStep&>(ctx);
  const int64_t H = w.cols();
  c.embed_host.resize(tokens.size() * static_cast<size_t>(H));
  for (size_t t = 0; t < tokens.size(); ++t) w.decode_rows(tokens[t], tokens[t] + 1, c.embed_host.data() + t * H);
  cuda::copy_to_device(out, c.embed_host.data(), sizeof(float) * c.embed_host.size(), stream());
}

const float* CudaBackend::vector(const std::vector<float>& v) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = vecs_.find(v.data());
  if (it == vecs_.end()) {
    on_device();
    cuda::DeviceBuffer b(std::max<size_t>(v.size(), 1) * sizeof(float));
    b.upload(v.data(), v.size() * sizeof(float));
    it = vecs_.emplace(v.data(), std::move(b)).first;
  }
  return it->second.as<float>();
}

void CudaBackend::rmsnorm(const float* x, const float* weight, int64_t rows, int64_t dim, float eps, float* out) {
  cuda::rmsnorm(x, weight, rows, dim, eps, out, stream());
}

const cuda::DeviceMatrix* CudaBackend::fusable(const WeightMatrix* next, int64_t n, int64_t width) {
  if (!next) return nullptr;
  const cuda::DeviceMatrix& m = prepared(*next).m;
  m.input_rotated(nullptr, 0);  // (whatever an unfinished step left)
  if (!fuse_input_rotation_ || n > 16 || next->cols() != width || !m.input_rotation().signs) return nullptr;
  return &m;
}

void CudaBackend::rotated_by_op(const cuda::DeviceMatrix& m, const float* out, int64_t n) {
  m.input_rotated(out, n);
  ++fused_input_rotations_;
}

void CudaBackend::rmsnorm_for(const WeightMatrix* next, const float* x, const float* weight, int64_t rows, int64_t dim,
                              float eps, float* out) {
  if (const cuda::DeviceMatrix* m = fusable(next, rows, dim)) {
    const cuda::DeviceMatrix::InputRotation r = m->input_rotation();
    if (cuda::rmsnorm_rotate(x, weight, rows, dim, eps, out, r.signs, r.block, r.xrot, stream()))
      return rotated_by_op(*m, out, rows);
  }
  rmsnorm(x, weight, rows, dim, eps, out);
}

void CudaBackend::gated_activation_for(const WeightMatrix* next, Activation act, const float* gate_up, int64_t n,
                                       int64_t width, float* out) {
  if (const cuda::DeviceMatrix* m = fusable(next, n, width)) {
    const cuda::DeviceMatrix::InputRotation r = m->input_rotation();
    if (cuda::gated_rows_rotate(act, gate_up, n, width, out, r.signs, r.block, r.xrot, stream()))
      return rotated_by_op(*m, out, n);
  }
  gated_activation(act, gate_up, n, width, out);
}

void CudaBackend::rope(float* x, int64_t n, int64_t heads, int64_t head_dim, int64_t rotary_dim, const float* cos,
                       const float* sin) {
  cuda::rope(x, n, heads, head_dim, rotary_dim, cos, sin, stream());
}

void CudaBackend::gated_activation(Activation act, const float* gate_up, int64_t n, int64_t width, float* out) {
  cuda::gated_rows(act, gate_up, n, width, out, stream());
}

void CudaBackend::add_bias(float* y, const float* bias, int64_t rows, int64_t width, int64_t ld) {
  cuda::add_bias(y, bias, rows, width, ld, stream());
}
void CudaBackend::add(float* x, const float* y, int64_t count) { cuda::add(x, y, count, stream()); }
void CudaBackend::scale(float* x, int64_t count, float s) { cuda::scale(x, count, s, stream()); }
void CudaBackend::softcap(float* x, int64_t count, float cap) { cuda::softcap(x, count, cap, stream()); }

void CudaBackend::copy_columns(float* dst, int64_t dst_ld, const float* src, int64_t src_ld, int64_t rows,
                               int64_t width) {
  cuda::copy_columns(dst, dst_ld, src, src_ld, rows, width, stream());
}

void CudaBackend::gather_rows(StepContext& ctx, float* dst, const float* src, std::span<const int32_t> rows,
                              int64_t width) {
  if (rows.empty()) return;
  CudaStep& c = static_cast<CudaStep&>(ctx);
  reserve(c.rows, rows.size_bytes());
  cuda::copy_to_device(c.rows.data(), rows.data(), rows.size_bytes(), stream());
  cuda::gather_rows(dst, src, c.rows.as<int32_t>(), static_cast<int64_t>(rows.size()), width, stream());
}

void CudaBackend::add_weighted_rows(StepContext& ctx, float* dst, const float* src, std::span<const int32_t> rows,
                                    std::span<const float> weights, int64_t width) {
  UPG_CHECK(weights.size() == rows.size(), "add_weighted_rows: ", rows.size(), " rows, ", weights.size(), " weights");
  if (rows.empty()) return;
  CudaStep& c = static_cast<CudaStep&>(ctx);
  reserve(c.rows, rows.size_bytes());
  reserve(c.weights, weights.size_bytes());
  cuda::copy_to_device(c.rows.data(), rows.data(), rows.size_bytes(), stream());
  cuda::copy_to_device(c.weights.data(), weights.data(), weights.size_bytes(), stream());
  cuda::add_weighted_rows(dst, src, c.rows.as<int32_t>(), c.weights.as<float>(), static_cast<int64_t>(rows.size()),
                          width, stream());
}

void CudaBackend::fill(float* x, int64_t count, float v) { cuda::fill(x, count, v, stream()); }

void CudaBackend::deinterleave_pairs(float* x, int64_t segments, int64_t ld, int64_t width) {
  cuda::deinterleave_pairs(x, segments, ld, width, stream());
}

void CudaBackend::head_products(const float* w, bool transpose, int64_t heads, int64_t rows, int64_t cols,
                                const float* x, int64_t x_ld, int64_t n, float* y, int64_t y_ld) {
  cuda::head_products(w, transpose, heads, rows, cols, x, x_ld, n, y, y_ld, stream());
}

void CudaBackend::penalize_logits(StepContext& ctx, float* logits, int64_t ld, std::span<const LogitPenalty> penalties) {
  if (penalties.empty()) return;
  CudaStep& c = static_cast<CudaStep&>(ctx);
  reserve(c.penalties, penalties.size_bytes());
  cuda::copy_to_device(c.penalties.data(), penalties.data(), penalties.size_bytes(), stream());
  cuda::penalize_logits(logits, ld, c.penalties.as<LogitPenalty>(), static_cast<int64_t>(penalties.size()), stream());
}

void CudaBackend::top_logits(StepContext& ctx, const float* logits, int64_t ld, std::span<const int32_t> rows,
                             int64_t vocab, int k, int32_t* ids, float* values, double* sum_exp) {
  if (rows.empty()) return;
  CudaStep& c = static_cast<CudaStep&>(ctx);
  // One device array [sums (n doubles) | ids (n k int32) | values (n k floats)], one copy back.
  const size_t n = rows.size(), nk = n * static_cast<size_t>(k);
  const size_t bytes = sizeof(double) * n + (sizeof(int32_t) + sizeof(float)) * nk;
  reserve(c.top_rows, rows.size_bytes());
  reserve(c.top_out, bytes);
  uint8_t* d = c.top_out.as<uint8_t>();
  double* d_sums = reinterpret_cast<double*>(d);
  int32_t* d_ids = reinterpret_cast<int32_t*>(d + sizeof(double) * n);
  float* d_values = reinterpret_cast<float*>(d + sizeof(double) * n + sizeof(int32_t) * nk);
  cuda::copy_to_device(c.top_rows.data(), rows.data(), rows.size_bytes(), stream());
  cuda::top_logits(logits, ld, c.top_rows.as<int32_t>(), static_cast<int64_t>(n), vocab, k, d_ids, d_values,
                   sum_exp ? d_sums : nullptr, stream());
  c.top_host.resize(bytes);
  cuda::copy_to_host(c.top_host.data(), d, bytes, stream());
  const uint8_t* h = c.top_host.data();
  if (sum_exp) std::memcpy(sum_exp, h, sizeof(double) * n);
  std::memcpy(ids, h + sizeof(double) * n, sizeof(int32_t) * nk);
  std::memcpy(values, h + sizeof(double) * n + sizeof(int32_t) * nk, sizeof(float) * nk);
}

std::unique_ptr<StepContext> CudaBackend::new_context() { return std::make_unique<CudaStep>(); }

void CudaBackend::bind_kv(StepContext& ctx, std::span<const KvLayerView> layer0, std::span<const int64_t> blocks,
                          std::span<const int64_t> pos, size_t layer_stride) {
  on_device();
  CudaStep& c = static_cast<CudaStep&>(ctx);
  c.entries = static_cast<int64_t>(layer0.size());
  if (c.entries == 0) return;
  c.geom = layer0[0];
  UPG_CHECK(c.geom.type == KvType::BF16, "cuda: the KV cache must be bf16, not ", kv_type_name(c.geom.type));
  c.layer_stride = layer_stride;
  const int64_t most = std::max<int64_t>(1, *std::max_element(blocks.begin(), blocks.end()));
  c.max_blocks = (most + kTableGrain - 1) / kTableGrain * kTableGrain;
  c.max_pos = *std::max_element(pos.begin(), pos.end());
  c.table_host.assign(static_cast<size_t>(c.entries * c.max_blocks), nullptr);
  c.pos_host.resize(static_cast<size_t>(c.entries));
  for (int64_t t = 0; t < c.entries; ++t) {
    for (int64_t i = 0; i < blocks[t]; ++i) c.table_host[t * c.max_blocks + i] = layer0[t].blocks[i];
    c.pos_host[t] = static_cast<int32_t>(pos[t]);
  }
  reserve(c.table, c.table_host.size() * sizeof(const uint8_t*));
  reserve(c.pos, c.pos_host.size() * sizeof(int32_t));
  cuda::copy_to_device(c.table.data(), c.table_host.data(), c.table_host.size() * sizeof(const uint8_t*), stream());
  cuda::copy_to_device(c.pos.data(), c.pos_host.data(), c.pos_host.size() * sizeof(int32_t), stream());
  c.tiles_host = cuda::prompt_attention_tiles(c.table_host.data(), c.entries, c.max_blocks);
  if (c.prompt_tiles()) {
    reserve(c.tiles, c.tiles_host.size() * sizeof(int32_t));
    cuda::copy_to_device(c.tiles.data(), c.tiles_host.data(), c.tiles_host.size() * sizeof(int32_t), stream());
  }
}

void CudaBackend::store_kv(StepContext& ctx, int64_t layer, int kv_index, const float* x, int64_t ld,
                           int64_t n_kv_heads) {
  CudaStep& c = static_cast<CudaStep&>(ctx);
  cuda::kv_store_bf16(c.paged(layer), kv_index, x, ld, c.pos.as<int32_t>(), c.entries, n_kv_heads, stream());
}

void CudaBackend::attention_input(StepContext& ctx, int64_t layer, const float* qkv, int64_t ld, int64_t n,
                                  int64_t n_heads, int64_t n_kv_heads, int64_t head_dim, int64_t rotary_dim,
                                  const float* cos, const float* sin, float* q_out, float*) {
  CudaStep& c = static_cast<CudaStep&>(ctx);
  UPG_CHECK(n == c.entries, "attention_input: ", n, " rows for ", c.entries, " bound entries");
  cuda::attention_input(c.paged(layer), qkv, ld, c.pos.as<int32_t>(), n, n_heads, n_kv_heads, head_dim, rotary_dim,
                        cos, sin, q_out, stream());
}

void CudaBackend::attention(StepContext& ctx, int64_t layer, const AttentionSpec& s, const float* q, float* out) {
  CudaStep& c = static_cast<CudaStep&>(ctx);
  const cuda::AttentionParams p{s.n_heads, s.n_kv_heads, s.head_dim, s.window, s.scale, s.softcap};
  if (s.value_dim > 0) {  // multi-head latent attention
    cuda::latent_attention(p, s.value_dim, c.paged(layer), q, c.pos.as<int32_t>(), c.entries, out, stream());
    return;
  }
  const size_t ws = cuda::decode_attention_workspace(p, c.entries, c.max_pos);
  reserve(c.workspace, ws);
  if (c.prompt_tiles() && cuda::prompt_attention_supported(p, c.paged(layer)) && prompt_attention_) {
    cuda::prompt_attention(p, c.paged(layer), q, c.pos.as<int32_t>(), c.tiles.as<int32_t>(), c.ntiles(), c.entries,
                           c.max_pos, out, ws ? c.workspace.data() : nullptr, stream());
    return;
  }
  cuda::decode_attention(p, c.paged(layer), q, c.pos.as<int32_t>(), c.entries, c.max_pos, out,
                         ws ? c.workspace.data() : nullptr, stream());
}

namespace {
// The engine's key plus what the recorded ops take from the step context.
std::vector<uint64_t> full_key(const CudaStep& c, std::span<const uint64_t> key) {
  std::vector<uint64_t> k(key.begin(), key.end());
  const auto u = [](const void* p) { return static_cast<uint64_t>(reinterpret_cast<uintptr_t>(p)); };
  k.insert(k.end(), {static_cast<uint64_t>(c.entries), static_cast<uint64_t>(c.max_blocks),
                     static_cast<uint64_t>(cuda::decode_attention_splits(c.max_pos)), c.layer_stride, u(c.table.data()),
                     u(c.pos.data()), u(c.workspace.data()), c.workspace.size(),
                     static_cast<uint64_t>(c.prompt_tiles() ? c.ntiles() : 0), u(c.tiles.data())});
  return k;
}
}  // namespace

bool CudaBackend::replay(StepContext& ctx, std::span<const uint64_t> key) {
  if (!graphs_) return false;
  CudaStep& c = static_cast<CudaStep&>(ctx);
  auto it = c.graphs.find(full_key(c, key));
  if (it == c.graphs.end()) return false;
  it->second.launch(stream());
  return true;
}

bool CudaBackend::begin_recording(StepContext& ctx, std::span<const uint64_t> key) {
  if (!graphs_) return false;
  CudaStep& c = static_cast<CudaStep&>(ctx);
  std::vector<uint64_t> k = full_key(c, key);
  if (c.seen.size() >= kMaxSeen) c.seen.clear();
  if (++c.seen[k] < 2) return false;  // the first run sizes the buffers; record the second
  c.seen.erase(k);
  if (c.graphs.size() >= kMaxGraphs) c.graphs.erase(c.graphs.begin());
  cuda::Graph::begin_capture(stream());
  c.recording = std::move(k);
  return true;
}

bool CudaBackend::end_recording(StepContext& ctx) {
  CudaStep& c = static_cast<CudaStep&>(ctx);
  std::string why;
  cuda::Graph g = cuda::Graph::end_capture(stream(), &why);
  std::vector<uint64_t> k = std::move(c.recording);
  c.recording.clear();
  if (!g.valid()) {
    std::fprintf(stderr, "upg: %s: recording a step failed (%s); running it without a CUDA graph\n", name_.c_str(),
                 why.c_str());
    graphs_ = false;
    return false;
  }
  if (std::getenv("UPG_CUDA_VERBOSE"))
    std::fprintf(stderr, "upg: %s: recorded a layer loop of %zu entries: %zu graph nodes\n", name_.c_str(),
                 static_cast<size_t>(c.entries), g.nodes());
  g.launch(stream());
  c.graphs.emplace(std::move(k), std::move(g));
  return true;
}

void CudaBackend::abort_recording(StepContext& ctx) {
  CudaStep& c = static_cast<CudaStep&>(ctx);
  if (c.recording.empty()) return;
  c.recording.clear();
  (void)cuda::Graph::end_capture(stream(), nullptr);
}

}  // namespace upg
