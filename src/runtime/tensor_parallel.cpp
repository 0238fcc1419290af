// plan_tensor_parallel, Model::shard and TensorParallelEngine (see tensor_parallel.h, shard_plan.h).
#include "runtime/tensor_parallel.h"

#include <cmath>
#include <atomic>
#include <exception>
#include <map>
#include <numeric>
#include <thread>

#include "base/error.h"
#include "base/thread_pool.h"
#include "codecs/matrix_slice.h"

namespace upg {

namespace {

// Boundaries of `total` split into `ranks` parts, inner boundaries multiples of `unit`, each as near
// as it can be to an even split; empty when no such split exists.
std::vector<int64_t> split_evenly(int64_t total, int64_t unit, int ranks) {
  std::vector<int64_t> b{0};
  for (int p = 1; p < ranks; ++p) {
    const int64_t lo = (b.back() / unit + 1) * unit, hi = total - static_cast<int64_t>(ranks - p) * unit;
    if (lo > hi) return {};
    const double target = static_cast<double>(total) * p / ranks;
    int64_t best = lo;
    for (int64_t k : {static_cast<int64_t>(std::floor(target / unit)), static_cast<int64_t>(std::ceil(target / unit))}) {
      const int64_t v = std::clamp(k * unit, lo, hi);
      if (std::fabs(static_cast<double>(v) - target) < std::fabs(static_cast<double>(best) - target)) best = v;
    }
    b.push_back(best);
  }
  b.push_back(total);
  return b;
}

// The largest part over an even share.
double imbalance(const std::vector<int64_t>& b) {
  int64_t most = 0;
  for (size_t i = 0; i + 1 < b.size(); ++i) most = std::max(most, b[i + 1] - b[i]);
  return static_cast<double>(most) * static_cast<double>(b.size() - 1) / static_cast<double>(b.back());
}

constexpr double kMaxImbalance = 1.25;

struct RowRange {
  int64_t begin, end;
};

// The rows `ranges` of the matrices `parts` stacked (their outputs side by side), as slices in
// that order (a range crossing two parts gives a slice of each).
std::vector<std::unique_ptr<WeightMatrix>> slice_stacked_rows(const std::vector<std::unique_ptr<WeightMatrix>>& parts,
                                                              const std::vector<RowRange>& ranges) {
  std::vector<std::unique_ptr<WeightMatrix>> out;
  for (const RowRange& r : ranges) {
    int64_t off = 0;
    for (const auto& p : parts) {
      const int64_t a = std::max(r.begin, off), b = std::min(r.end, off + p->rows());
      if (a < b) out.push_back(slice_matrix(*p, {a - off, b - off, 0, p->cols()}));
      off += p->rows();
    }
  }
  return out;
}

std::vector<float> slice_stacked(const std::vector<float>& v, const std::vector<RowRange>& ranges) {
  std::vector<float> out;
  if (v.empty()) return out;
  for (const RowRange& r : ranges) out.insert(out.end(), v.begin() + r.begin, v.begin() + r.end);
  return out;
}

std::unique_ptr<WeightMatrix> whole_copy(const WeightMatrix& w);

// Multi-head latent attention split by heads [h0, h1): each rank its heads' rows of q (or q_b), of
// kv_b and their per-head w_uk, w_uv; the latent projections (q_a, kv_a) and norms whole, so every
// rank computes and caches the whole latent row.
void shard_mla(const MlaConfig& a, const LayerWeights::Mla& F, int64_t h0, int64_t h1, LayerWeights::Mla& L) {
  const int64_t qd = a.qk_head_dim(), r = a.kv_lora_rank, nope = a.qk_nope_head_dim, vd = a.v_head_dim;
  if (F.q) L.q = slice_matrix(*F.q, {h0 * qd, h1 * qd, 0, F.q->cols()});
  if (F.q_a) L.q_a = whole_copy(*F.q_a);
  if (F.q_b) L.q_b = slice_matrix(*F.q_b, {h0 * qd, h1 * qd, 0, F.q_b->cols()});
  L.q_a_norm = F.q_a_norm;
  L.kv_a = whole_copy(*F.kv_a);
  L.kv_a_norm = F.kv_a_norm;
  if (F.kv_b) L.kv_b = slice_matrix(*F.kv_b, {h0 * (nope + vd), h1 * (nope + vd), 0, F.kv_b->cols()});
  L.w_uk.assign(F.w_uk.begin() + h0 * nope * r, F.w_uk.begin() + h1 * nope * r);
  L.w_uv.assign(F.w_uv.begin() + h0 * vd * r, F.w_uv.begin() + h1 * vd * r);
}

std::unique_ptr<WeightMatrix> whole_copy(const WeightMatrix& w) { return slice_matrix(w, {0, w.rows(), 0, w.cols()}); }

GatedMlp whole_copy(const GatedMlp& g) {
  GatedMlp c;
  for (const auto& w : g.gate_up) c.gate_up.push_back(whole_copy(*w));
  c.gate_up_bias = g.gate_up_bias;
  if (g.down) c.down = whole_copy(*g.down);
  c.down_bias = g.down_bias;
  return c;
}

}  // namespace

TensorParallelPlan plan_tensor_parallel(const Model& m, int ranks) {
  const ModelConfig& c = m.config();
  UPG_CHECK(ranks >= 1, "tensor parallelism needs at least 1 rank, not ", ranks);
  UPG_CHECK(m.tensor_parallel() == nullptr, "the model is already a tensor-parallel shard");
  UPG_CHECK(c.moe.num_experts == 0 || c.moe.num_experts >= ranks, "tensor parallelism over ", ranks,
            " ranks assigns whole experts to ranks; ", c.architecture, " has ", c.moe.num_experts);
  const int64_t nkv = c.num_key_value_heads, nh = c.num_attention_heads, group = nh / nkv;
  // o's input columns per query head (multi-head latent attention: each head's v_head_dim values).
  const int64_t o_cols = c.mla.enabled() ? c.mla.v_head_dim : c.head_dim;
  const int64_t copies = nkv >= ranks ? 1 : ranks / nkv;  // ranks sharing a kv head (replicated)
  UPG_CHECK(nkv >= ranks || (ranks % nkv == 0 && group % copies == 0), "tensor parallelism over ", ranks,
            " ranks: ", c.architecture, " has ", nkv, " key-value heads (", group,
            " query heads each); with fewer kv heads than ranks each is replicated on ranks / kv heads ranks, so "
            "the ranks must be a multiple of the kv heads and that multiple must divide a kv head's query heads");
  UPG_CHECK(c.vocab_size >= ranks && c.hidden_size >= ranks && c.intermediate_size >= ranks,
            "the model is too small to split over ", ranks, " ranks");
  int64_t align_o = 1, align_down = 1;
  for (const LayerWeights& L : m.layers()) {
    align_o = std::lcm(align_o, slice_column_alignment(*L.o));
    if (L.mlp.down) align_down = std::lcm(align_down, slice_column_alignment(*L.mlp.down));  // (dense layers)
  }
  TensorParallelPlan p;
  p.ranks = ranks;
  // Split by columns where the codec allows a split nearly as even as the free one.
  const std::vector<int64_t> inter_free = split_evenly(c.intermediate_size, 1, ranks);
  if (copies == 1) {  // whole groups: boundaries over the kv heads
    const std::vector<int64_t> kv_free = split_evenly(nkv, 1, ranks);
    std::vector<int64_t> kv = split_evenly(nkv, align_o / std::gcd(align_o, group * o_cols), ranks);
    p.o_by_columns = !kv.empty() && imbalance(kv) <= kMaxImbalance * imbalance(kv_free);
    if (!p.o_by_columns) kv = kv_free;
    for (int r = 0; r < ranks; ++r) p.kv_begin.push_back(kv[r]), p.kv_end.push_back(kv[r + 1]);
    for (int64_t b : kv) p.q_heads.push_back(b * group);
  } else {  // kv head r / copies on rank r, with part r % copies of its query heads
    const int64_t share = group / copies;
    for (int r = 0; r <= ranks; ++r) p.q_heads.push_back(r * share);
    for (int r = 0; r < ranks; ++r) p.kv_begin.push_back(r / copies), p.kv_end.push_back(r / copies + 1);
    p.o_by_columns = true;
    for (int64_t b : p.q_heads) p.o_by_columns = p.o_by_columns && (b * o_cols) % align_o == 0;
  }
  p.intermediate = split_evenly(c.intermediate_size, align_down, ranks);
  p.down_by_columns = !p.intermediate.empty() && imbalance(p.intermediate) <= kMaxImbalance * imbalance(inter_free);
  if (!p.down_by_columns) p.intermediate = inter_free;
  p.vocab = split_evenly(c.vocab_size, 1, ranks);
  p.hidden = split_evenly(c.hidden_size, 1, ranks);
  if (c.moe.num_experts > 0) p.experts = split_evenly(c.moe.num_experts, 1, ranks);
  return p;
}

std::unique_ptr<Model> Model::shard(const Model& full, std::shared_ptr<const TensorParallelPlan> plan, int rank) {
  UPG_CHECK(plan && rank >= 0 && rank < plan->ranks, "Model::shard: rank ", rank, " is not in the plan");
  const TensorParallelPlan& p = *plan;
  const ModelConfig& fc = full.config();
  const int64_t H = fc.hidden_size;
  // Per query head: o's input columns (MLA: v_head_dim per head), q/k/v rows (not MLA).
  const int64_t hd = fc.head_dim, o_cols = fc.mla.enabled() ? fc.mla.v_head_dim : hd;
  const int64_t q_out = fc.num_attention_heads * hd, kv_out = fc.num_key_value_heads * hd, I = fc.intermediate_size;
  const int64_t q0 = p.q_heads[rank], q1 = p.q_heads[rank + 1], kv0 = p.kv_begin[rank], kv1 = p.kv_end[rank];
  const int64_t i0 = p.intermediate[rank], i1 = p.intermediate[rank + 1];
  const int64_t h0 = p.hidden[rank], h1 = p.hidden[rank + 1];

  std::unique_ptr<Model> m(new Model());
  m->source_ = full.source_;
  m->config_ = fc;
  m->config_.num_key_value_heads = kv1 - kv0;
  m->config_.num_attention_heads = q1 - q0;
  m->config_.intermediate_size = i1 - i0;
  m->arch_ = full.arch_;
  m->tensors_ = full.tensors_;
  m->embed_ = full.embed_;
  m->lm_head_ = slice_matrix(full.lm_head(), {p.vocab[rank], p.vocab[rank + 1], 0, H});
  m->final_norm_ = full.final_norm_;
  m->layers_.resize(full.layers_.size());
  const std::vector<RowRange> qkv_rows{{q0 * hd, q1 * hd},
                                       {q_out + kv0 * hd, q_out + kv1 * hd},
                                       {q_out + kv_out + kv0 * hd, q_out + kv_out + kv1 * hd}};
  const std::vector<RowRange> gate_up_rows{{i0, i1}, {I + i0, I + i1}};
  for (size_t l = 0; l < full.layers_.size(); ++l) {
    const LayerWeights& F = full.layers_[l];
    LayerWeights& L = m->layers_[l];
    try {
      L.qkv = slice_stacked_rows(F.qkv, qkv_rows);
      L.qkv_bias = slice_stacked(F.qkv_bias, qkv_rows);
      L.o = p.o_by_columns ? slice_matrix(*F.o, {0, H, q0 * o_cols, q1 * o_cols})
                           : slice_matrix(*F.o, {h0, h1, 0, F.o->cols()});
      if (fc.mla.enabled()) shard_mla(fc.mla, F.mla, q0, q1, L.mla);
      L.o_bias = F.o_bias;  // added once, after the ranks' parts are combined
      if (!F.mlp.empty()) {
        L.mlp.gate_up = slice_stacked_rows(F.mlp.gate_up, gate_up_rows);
        L.mlp.gate_up_bias = slice_stacked(F.mlp.gate_up_bias, gate_up_rows);
        L.mlp.down = p.down_by_columns ? slice_matrix(*F.mlp.down, {0, H, i0, i1}) : slice_matrix(*F.mlp.down, {h0, h1, 0, I});
        L.mlp.down_bias = F.mlp.down_bias;
      }
      if (F.router) {  // expert parallelism (shard_plan.h)
        L.router = whole_copy(*F.router);
        L.router_bias = F.router_bias;
        L.experts.resize(F.experts.size());
        for (int64_t e = p.experts[rank]; e < p.experts[rank + 1]; ++e) L.experts[e] = whole_copy(F.experts[e]);
        if (rank == 0) {
          L.shared_expert = whole_copy(F.shared_expert);
          if (F.shared_expert_gate) L.shared_expert_gate = whole_copy(*F.shared_expert_gate);
        }
      }
    } catch (const Error& e) {
      throw Error(str_cat("tensor-parallel shard ", rank, " of ", p.ranks, ", layer ", l, ": ", e.what()));
    }
    L.input_norm = F.input_norm;
    L.post_attention_norm = F.post_attention_norm;
    L.attn_out_norm = F.attn_out_norm;
    L.mlp_out_norm = F.mlp_out_norm;
    L.window = F.window;
  }
  m->backend_ = full.backend_;
  m->tp_plan_ = std::move(plan);
  m->tp_rank_ = rank;
  return m;
}

TensorParallelEngine::TensorParallelEngine(const Model& model, const TensorParallelOptions& tp, const EngineOptions& o)
    : model_(model), options_(tp), plan_(std::make_shared<const TensorParallelPlan>(plan_tensor_parallel(model, tp.ranks))) {
  const int ranks = tp.ranks;
  UPG_CHECK(tp.devices.empty() || static_cast<int>(tp.devices.size()) == ranks, "tensor parallelism over ", ranks,
            " ranks needs one device per rank, not ", tp.devices.size());
  UPG_CHECK(tp.collectives == "host" || tp.collectives == "nccl", "unknown collectives '", tp.collectives,
            "': expected host or nccl");
  for (int r = 0; r < ranks; ++r)
    backends_.push_back(tp.devices.empty() ? cpu_backend() : make_backend(tp.devices[static_cast<size_t>(r)]));
  comms_ = make_communicators();
  EngineOptions eo = o;
  if (eo.threads <= 0) eo.threads = std::max(1, ThreadPool::current_threads() / ranks);
  rank_logits_.resize(static_cast<size_t>(ranks));
  for (int r = 0; r < ranks; ++r) {
    shards_.push_back(Model::shard(model, plan_, r));
    eo.comm = comms_[static_cast<size_t>(r)];
    eo.backend = backends_[static_cast<size_t>(r)];
    engines_.push_back(std::make_unique<Engine>(*shards_.back(), eo));
  }
}

std::vector<std::shared_ptr<Communicator>> TensorParallelEngine::make_communicators() const {
  if (options_.collectives == "nccl") return make_nccl_communicators(backends_);
  std::vector<Backend*> b;
  for (const auto& p : backends_) b.push_back(p.get());
  return make_host_communicators(options_.ranks, b);
}

TensorParallelEngine::~TensorParallelEngine() = default;

SeqId TensorParallelEngine::new_sequence() {
  const SeqId s = engines_[0]->new_sequence();
  for (size_t r = 1; r < engines_.size(); ++r) {
    const SeqId t = engines_[r]->new_sequence();
    UPG_CHECK(t == s, "tensor-parallel ranks disagree on sequence ids (", s, " vs ", t, ")");
  }
  return s;
}

void TensorParallelEngine::release(SeqId s) {
  for (auto& e : engines_) e->release(s);
}

void TensorParallelEngine::truncate(SeqId s, int64_t len) {
  for (auto& e : engines_) e->truncate(s, len);
}

int64_t TensorParallelEngine::attach_prefix(SeqId s, std::span<const int32_t> tokens) {
  const int64_t n = engines_[0]->attach_prefix(s, tokens);
  for (size_t r = 1; r < engines_.size(); ++r) {
    const int64_t m = engines_[r]->attach_prefix(s, tokens);
    UPG_CHECK(m == n, "tensor-parallel ranks disagree on a shared prefix (", n, " vs ", m, " positions)");
  }
  return n;
}

void TensorParallelEngine::publish_prefix(SeqId s, std::span<const int32_t> tokens) {
  for (auto& e : engines_) e->publish_prefix(s, tokens);
}

int64_t TensorParallelEngine::trim_cache() {
  int64_t n = 0;
  for (auto& e : engines_) n += e->trim_cache();
  return n;
}

void TensorParallelEngine::set_observer(Observer) {
  throw Error("the calibration observer does not run with tensor parallelism (calibrate on one engine)");
}

std::unique_ptr<StepEngine> make_step_engine(const Model& model, const EngineOptions& o,
                                             const TensorParallelOptions& tp) {
  UPG_CHECK(tp.ranks >= 1, "tensor parallelism needs at least one rank, got ", tp.ranks);
  if (tp.ranks == 1 && tp.devices.empty()) return std::make_unique<Engine>(model, o);
  return std::make_unique<TensorParallelEngine>(model, tp, o);
}

void TensorParallelEngine::step(std::span<const BatchEntry> batch, std::vector<float>& logits) {
  const int n = ranks();
  std::map<SeqId, int64_t> before;
  for (const BatchEntry& e : batch)
    if (engines_[0]->cache().contains(e.seq)) before.emplace(e.seq, engines_[0]->length(e.seq));
  std::vector<std::exception_ptr> errors(static_cast<size_t>(n));
  std::atomic<int> first_failed{-1};  // the rank whose own error stopped the group (the others' say so)
  auto run = [&](int r) {
    try {
      engines_[static_cast<size_t>(r)]->step(batch, r == 0 ? logits : rank_logits_[static_cast<size_t>(r)]);
    } catch (const std::exception& e) {
      errors[static_cast<size_t>(r)] = std::current_exception();
      int none = -1;
      first_failed.compare_exchange_strong(none, r);
      comms_[static_cast<size_t>(r)]->abort(str_cat("rank ", r, ": ", e.what()));
    }
  };
  {
    std::vector<std::jthread> threads;
    for (int r = 1; r < n; ++r) threads.emplace_back(run, r);
    run(0);
  }
  const int failed = first_failed.load();
  if (failed < 0) return;
  for (auto& e : engines_)
    for (const auto& [s, len] : before)
      if (e->cache().contains(s) && e->length(s) > len) e->truncate(s, len);
  // A group whose collectives were aborted cannot be used again: make a fresh one.
  comms_ = make_communicators();
  for (int k = 0; k < n; ++k) engines_[static_cast<size_t>(k)]->set_communicator(comms_[static_cast<size_t>(k)]);
  std::rethrow_exception(errors[static_cast<size_t>(failed)]);
}

}  // namespace upg
