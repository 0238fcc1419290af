#include "runtime/engine.h"

#include <algorithm>
#include <cstdlib>
#include <cmath>
#include <cstring>

#include "base/error.h"
#include "kernels/cpu/rope.h"

namespace upg {

namespace {
std::shared_ptr<Backend> chosen_backend(const Model& model, const EngineOptions& o) {
  return o.backend ? o.backend : model.backend();
}
}  // namespace

Engine::Engine(const Model& model, const EngineOptions& o)
    : model_(model),
      backend_(chosen_backend(model, o)),
      pool_(backend_->host_memory() ? std::make_unique<ThreadPool>(o.threads > 0 ? o.threads : ThreadPool::current_threads())
                                    : nullptr),
      ctx_(backend_->new_context()),
      cache_(model.config().num_hidden_layers, kv_geometry(model.config()).kv_heads,
             kv_geometry(model.config()).head_dim, o.kv, kv_geometry(model.config()).keys_only, backend_.get()),
      x_(*backend_), h_(*backend_), qkv_(*backend_), q_(*backend_), k_(*backend_), attn_(*backend_),
      tmp_(*backend_), mlp_(*backend_), act_(*backend_), cos_(*backend_), sin_(*backend_), part_(*backend_),
      xs_(*backend_), tp_in_(*backend_), tp_out_(*backend_), tp_gather_(*backend_), route_dev_(*backend_),
      gathered_(*backend_), expert_out_(*backend_), shared_out_(*backend_), mla_q_(*backend_), mla_qa_(*backend_),
      mla_kv_(*backend_), mla_ql_(*backend_), mla_lat_(*backend_) {
  const ModelConfig& c = model.config();
  Backend& be = *backend_;
  if (!be.host_memory()) {
    UPG_CHECK(o.kv.type == KvType::BF16, "the ", be.name(), " backend keeps its KV cache in bf16 only, not ",
              kv_type_name(o.kv.type), ": use the bf16 cache (--kv-type bf16; kv_type=\"bf16\" in Python)");
  }
  if (const TensorParallelPlan* p = model.tensor_parallel()) {
    UPG_CHECK(o.comm && o.comm->ranks() == p->ranks && o.comm->rank() == model.tensor_parallel_rank(),
              "the model is rank ", model.tensor_parallel_rank(), " of a ", p->ranks,
              "-rank tensor-parallel plan: the engine needs that rank's communicator (EngineOptions::comm)");
    for (int r = 0; r < p->ranks; ++r) {
      tp_q_.push_back(p->size(p->q_heads, r) * (c.mla.enabled() ? c.mla.v_head_dim : c.head_dim));
      tp_inter_.push_back(p->size(p->intermediate, r));
      tp_hidden_.push_back(p->size(p->hidden, r));
      tp_vocab_.push_back(p->size(p->vocab, r));
    }
    comm_ = o.comm;
  } else {
    UPG_CHECK(!o.comm || o.comm->ranks() == 1, "a ", o.comm ? o.comm->ranks() : 0,
              "-rank communicator needs a tensor-parallel shard of the model (Model::shard), not the whole model");
  }
  // Every matrix the step multiplies by, prepared (uploaded) once.
  for (const LayerWeights& L : model.layers()) {
    for (const auto& w : L.qkv) be.prepare(*w);
    if (L.o) be.prepare(*L.o);
    auto prepare_mlp = [&](const GatedMlp& g) {
      for (const auto& w : g.gate_up) be.prepare(*w);
      if (g.down) be.prepare(*g.down);
    };
    prepare_mlp(L.mlp);
    if (L.router) be.prepare(*L.router);
    for (const GatedMlp& e : L.experts) prepare_mlp(e);
    prepare_mlp(L.shared_expert);
    if (L.shared_expert_gate) be.prepare(*L.shared_expert_gate);
    for (const WeightMatrix* w : {L.mla.q.get(), L.mla.q_a.get(), L.mla.q_b.get(), L.mla.kv_a.get()})
      if (w) be.prepare(*w);  // (kv_b is multiplied by in its per-head split, w_uk and w_uv)
  }
  be.prepare(model.lm_head());
}

SeqId Engine::new_sequence() {
  const SeqId s = cache_.create();
  states_[s] = SeqState();
  return s;
}

void Engine::release(SeqId s) {
  cache_.release(s);
  states_.erase(s);
}

SeqId Engine::fork(SeqId s, int64_t len) {
  const SeqId f = cache_.fork(s, len);
  states_[f] = states_.at(s);
  return f;
}

void Engine::truncate(SeqId s, int64_t len) { cache_.truncate(s, len); }

int64_t Engine::attach_prefix(SeqId s, std::span<const int32_t> tokens) { return cache_.attach_prefix(s, tokens); }

void Engine::set_communicator(std::shared_ptr<Communicator> comm) {
  UPG_CHECK(comm_ && comm && comm->rank() == comm_->rank() && comm->ranks() == comm_->ranks(),
            "set_communicator: the engine is not a tensor-parallel rank, or the communicator is of another rank");
  comm_ = std::move(comm);
}

void Engine::gather_columns(const float* mine, int64_t n, const std::vector<int64_t>& widths, float* out) {
  int64_t total = 0;
  std::vector<int64_t> counts;
  for (int64_t w : widths) counts.push_back(n * w), total += w;
  tp_gather_.resize(static_cast<size_t>(n * total));
  comm_->all_gather(mine, counts, tp_gather_.data());
  int64_t off = 0, col = 0;
  for (int64_t w : widths) {
    backend_->copy_columns(out + col, total, tp_gather_.data() + off, w, n, w);
    off += n * w;
    col += w;
  }
}

void Engine::combined_matmul(const WeightMatrix& w, bool by_columns, const float* in,
                             const std::vector<int64_t>& in_widths, int64_t n, float* out) {
  Backend& be = *backend_;
  if (!comm_) {
    be.matmul(w, in, n, out);
  } else if (by_columns) {
    be.matmul(w, in, n, out);
    comm_->all_reduce_sum(out, n * model_.config().hidden_size);
  } else {
    tp_in_.resize(static_cast<size_t>(n * w.cols()));
    tp_out_.resize(static_cast<size_t>(n * w.rows()));
    gather_columns(in, n, in_widths, tp_in_.data());
    be.matmul(w, tp_in_.data(), n, tp_out_.data());
    gather_columns(tp_out_.data(), n, tp_hidden_, out);
  }
}

void Engine::set_observer(Observer observer) {
  UPG_CHECK(!observer || backend_->host_memory(), "the calibration observer needs activations in host memory; the ",
            backend_->name(), " backend keeps them on the device");
  UPG_CHECK(!observer || !comm_, "the calibration observer does not run on a tensor-parallel shard");
  observer_ = std::move(observer);
  observed_names_.assign(model_.layers().size(), {});
  head_name_.clear();
  for (const ModelTensor& t : model_.tensors()) {
    const LinearInput in = linear_input(t.part);
    if (t.layer >= 0 && in != LinearInput::None)
      observed_names_[static_cast<size_t>(t.layer)][{in, t.expert}].push_back(t.name);
    if (t.part == Part::LmHead || (t.part == Part::Embed && model_.config().tie_word_embeddings)) head_name_ = t.name;
  }
}

void Engine::observe(size_t layer, LinearInput in, const float* x, int64_t n, int64_t cols, int64_t expert) const {
  auto it = observed_names_[layer].find({in, expert});
  if (it == observed_names_[layer].end()) return;
  for (const std::string& name : it->second) observer_(name, x, n, cols);
}

const RopeFrequencies& Engine::frequencies(SeqState& st, int64_t seq_len) {
  const ModelConfig& c = model_.config();
  int64_t key = 0;  // the length the frequencies depend on (0: they do not)
  if (c.rope.type == "longrope") key = seq_len > c.rope.original_max_position_embeddings ? 2 : 1;
  else if (c.rope.type == "dynamic") key = st.dynamic.update(c, seq_len);
  auto it = freq_.find(key);
  if (it == freq_.end())
    it = freq_.emplace(key, rope_frequencies(c, c.rope.type == "longrope" ? seq_len : key)).first;
  return it->second;
}

void Engine::project(const std::vector<std::unique_ptr<WeightMatrix>>& parts, const std::vector<float>& bias,
                     const float* in, int64_t n, float* out, int64_t out_width) {
  Backend& be = *backend_;
  if (parts.size() == 1) {
    be.matmul(*parts[0], in, n, out);
  } else {
    int64_t off = 0;
    for (const auto& w : parts) {
      part_.resize(static_cast<size_t>(n * w->rows()));
      be.matmul(*w, in, n, part_.data());
      be.copy_columns(out + off, out_width, part_.data(), w->rows(), n, w->rows());
      off += w->rows();
    }
  }
  if (!bias.empty()) be.add_bias(out, be.vector(bias), n, out_width, out_width);
}

void Engine::step(std::span<const BatchEntry> batch, std::vector<float>& logits) { run_step(batch, &logits); }

void Engine::step_kept(std::span<const BatchEntry> batch) {
  if (backend_->host_memory()) return StepEngine::step_kept(batch);
  run_step(batch, nullptr);
}

void Engine::kept_logits(int64_t row, std::vector<float>& out) const {
  if (backend_->host_memory()) return StepEngine::kept_logits(row, out);
  const int64_t V = model_.config().vocab_size;
  UPG_CHECK(row >= 0 && row < kept_rows_, "kept_logits: row ", row, " of a step that kept ", kept_rows_, " rows");
  out.resize(static_cast<size_t>(V));
  const auto exclusive = backend_->exclusive();
  backend_->download(out.data(), kept_dev_ + row * V, sizeof(float) * V);
}

void Engine::sample_kept(std::span<const KeptSample> rows, std::vector<int32_t>& tokens) {
  if (backend_->host_memory()) return StepEngine::sample_kept(rows, tokens);
  const int64_t V = model_.config().vocab_size;
  const int64_t n = static_cast<int64_t>(rows.size());
  tokens.assign(rows.size(), -1);
  if (n == 0) return;
  // UPG_SAMPLE_ON_HOST=1: every row comes over whole and the host samples it (to compare).
  static const bool on_host = [] { const char* e = std::getenv("UPG_SAMPLE_ON_HOST"); return e && std::atoi(e) != 0; }();
  if (on_host) {
    for (int64_t i = 0; i < n; ++i) {
      kept_logits(rows[i].row, row_);
      tokens[i] = rows[i].sampler->sample(row_, rows[i].history, rows[i].generated);
    }
    return;
  }
  penalties_.clear();
  top_rows_.resize(rows.size());
  int k = 1;
  bool need_sum = false;
  for (int64_t i = 0; i < n; ++i) {
    const KeptSample& r = rows[i];
    UPG_CHECK(r.row >= 0 && r.row < kept_rows_, "sample_kept: row ", r.row, " of a step that kept ", kept_rows_,
              " rows");
    top_rows_[i] = static_cast<int32_t>(r.row);
    r.sampler->penalties(static_cast<int32_t>(r.row), V, r.history, r.generated, penalties_);
    k = std::max(k, r.sampler->candidates(V));
    need_sum = need_sum || r.sampler->needs_row_sum(V);
  }
  top_ids_.resize(static_cast<size_t>(n * k));
  top_values_.resize(static_cast<size_t>(n * k));
  top_sums_.resize(static_cast<size_t>(n));
  {
    const auto exclusive = backend_->exclusive();
    backend_->penalize_logits(*ctx_, kept_dev_, V, penalties_);
    backend_->top_logits(*ctx_, kept_dev_, V, top_rows_, V, k, top_ids_.data(), top_values_.data(),
                          need_sum ? top_sums_.data() : nullptr);
  }
  for (int64_t i = 0; i < n; ++i) {
    const std::span<const int32_t> ids(top_ids_.data() + i * k, static_cast<size_t>(k));
    const std::span<const float> values(top_values_.data() + i * k, static_cast<size_t>(k));
    int32_t t = rows[i].sampler->choose(ids, values, V, top_sums_[i]);
    if (t < 0) {  // the candidates cannot decide: the whole (penalised) row
      kept_logits(rows[i].row, row_);
      t = rows[i].sampler->choose(row_);
    }
    tokens[i] = t;
  }
}

void Engine::run_step(std::span<const BatchEntry> batch, std::vector<float>* logits_out) {
  const ModelConfig& c = model_.config();
  Backend& be = *backend_;
  const int64_t n = static_cast<int64_t>(batch.size());
  UPG_CHECK(n > 0, "step: empty batch");
  const auto exclusive = be.exclusive();
  const ThreadPool::Scope threads(pool_.get());  // every CPU kernel of the step runs on the engine's pool

  // Validate everything before touching the cache.
  std::map<SeqId, int64_t> next;  // next expected position per sequence
  for (int64_t t = 0; t < n; ++t) {
    const BatchEntry& e = batch[t];
    UPG_CHECK(cache_.contains(e.seq), "step: entry ", t, " names sequence ", e.seq, ", which does not exist");
    UPG_CHECK(e.token >= 0 && e.token < c.vocab_size, "step: token id ", e.token, " at index ", t,
              " is out of range [0, ", c.vocab_size, ")");
    auto [it, fresh] = next.try_emplace(e.seq, cache_.length(e.seq));
    UPG_CHECK(e.pos == it->second, "step: entry ", t, " of sequence ", e.seq, " is at position ", e.pos,
              ", expected ", it->second, " (the sequence's next position)");
    ++it->second;
  }
  // Grow the cache; on failure undo the sequences already grown.
  std::vector<std::pair<SeqId, int64_t>> grown;
  try {
    for (const auto& [s, end] : next) {
      const int64_t len = cache_.length(s);
      cache_.append(s, end - len);
      grown.emplace_back(s, len);
    }
  } catch (...) {
    for (const auto& [s, len] : grown) cache_.truncate(s, len);
    throw;
  }

  const int64_t H = c.hidden_size, hd = c.head_dim, nh = c.num_attention_heads, nkv = c.num_key_value_heads;
  const int64_t q_out = nh * hd, kv_out = nkv * hd, qkv_out = q_out + 2 * kv_out;
  const float eps = static_cast<float>(c.rms_norm_eps);
  x_.resize(n * H);
  h_.resize(n * H);
  qkv_.resize(n * qkv_out);
  q_.resize(n * q_out);
  k_.resize(n * kv_out);
  attn_.resize(n * std::max(q_out, c.num_attention_heads * c.mla.v_head_dim));
  tmp_.resize(n * H);

  const BlockConfig& blk = c.block;
  const TensorParallelPlan* tp = model_.tensor_parallel();  // null for a whole model
  std::vector<int32_t> tokens(static_cast<size_t>(n));
  for (int64_t t = 0; t < n; ++t) tokens[t] = batch[t].token;
  be.embed(*ctx_, model_.embed_tokens(), tokens, x_.data());
  if (blk.embedding_scale != 1) be.scale(x_.data(), n * H, static_cast<float>(blk.embedding_scale));

  // Rotary angles per token, with its sequence's frequencies (which may depend on its length).
  const int64_t half = c.rotary_dim / 2;
  cos_host_.resize(n * half);
  sin_host_.resize(n * half);
  {
    std::map<SeqId, const RopeFrequencies*> fr;
    for (const auto& [s, end] : next) fr[s] = &frequencies(states_.at(s), end);
    for (int64_t t = 0; t < n; ++t) {
      const RopeFrequencies& f = *fr[batch[t].seq];
      kernels::rope_cos_sin(f.inv_freq.data(), half, f.attention_scaling, batch[t].pos, 1,
                            cos_host_.data() + t * half, sin_host_.data() + t * half);
    }
  }
  cos_.resize(std::max<int64_t>(n * half, 1));
  sin_.resize(std::max<int64_t>(n * half, 1));
  be.upload(cos_.data(), cos_host_.data(), sizeof(float) * n * half);
  be.upload(sin_.data(), sin_host_.data(), sizeof(float) * n * half);

  // The entries' views of the cache.
  int64_t max_pos = 0;
  kv0_.resize(static_cast<size_t>(n));
  kv_blocks_.resize(static_cast<size_t>(n));
  kv_pos_.resize(static_cast<size_t>(n));
  for (int64_t t = 0; t < n; ++t) {
    max_pos = std::max(max_pos, batch[t].pos);
    kv0_[t] = cache_.view(batch[t].seq, 0);
    kv_blocks_[t] = (cache_.length(batch[t].seq) + cache_.options().block_size - 1) / cache_.options().block_size;
    kv_pos_[t] = batch[t].pos;
  }
  be.bind_kv(*ctx_, kv0_, kv_blocks_, kv_pos_, cache_.layer_stride());

  const double scale = blk.attention_scale > 0 ? blk.attention_scale : 1.0 / std::sqrt(static_cast<double>(hd));
  AttentionSpec as{nh, nkv, hd, 0, static_cast<float>(scale), static_cast<float>(blk.attention_softcap)};
  const auto& layers = model_.layers();
  auto run_layers = [&] {
    for (size_t l = 0; l < layers.size(); ++l) {
      const LayerWeights& L = layers[l];
      // (rmsnorm_for: the norm's output is next multiplied by the first q/k/v matrix, or below by the
      // MLP's first gate/up matrix, so a backend may prepare that product's input in the same pass.)
      be.rmsnorm_for(c.mla.enabled() ? nullptr : L.qkv.front().get(), x_.data(), be.vector(L.input_norm), n, H, eps,
                     h_.data());
      if (observer_) observe(l, LinearInput::AttnIn, h_.data(), n, H);
      if (c.mla.enabled()) {
        mla_attention(l, n);
      } else {
        project(L.qkv, L.qkv_bias, h_.data(), n, qkv_.data(), qkv_out);
        be.attention_input(*ctx_, static_cast<int64_t>(l), qkv_.data(), qkv_out, n, nh, nkv, hd, c.rotary_dim,
                           cos_.data(), sin_.data(), q_.data(), k_.data());
        as.window = L.window;
        be.attention(*ctx_, static_cast<int64_t>(l), as, q_.data(), attn_.data());
      }
      if (observer_) observe(l, LinearInput::AttnOut, attn_.data(), n, L.o->cols());
      // Straight into the residual stream unless a bias or a norm comes between, or the ranks'
      // parts must first be combined (tensor parallelism: runtime/shard_plan.h).
      if (!comm_ && L.o_bias.empty() && L.attn_out_norm.empty()) {
        be.matmul_add(*L.o, attn_.data(), n, x_.data());
      } else {
        combined_matmul(*L.o, tp && tp->o_by_columns, attn_.data(), tp_q_, n, tmp_.data());
        add_residual(tmp_.data(), L.o_bias, L.attn_out_norm, n, H, eps);
      }

      be.rmsnorm_for(L.router ? nullptr : L.mlp.gate_up.front().get(), x_.data(), be.vector(L.post_attention_norm), n,
                     H, eps, h_.data());
      if (observer_) observe(l, LinearInput::MlpIn, h_.data(), n, H);
      if (L.router) {
        moe_mlp(l, h_.data(), n, tmp_.data());
        if (comm_) comm_->all_reduce_sum(tmp_.data(), n * H);  // each rank's experts' share
        add_residual(tmp_.data(), {}, L.mlp_out_norm, n, H, eps);
      } else if (!comm_ && L.mlp_out_norm.empty() && L.mlp.down_bias.empty()) {
        gated_mlp(l, -1, L.mlp, h_.data(), n, x_.data(), false, true);
      } else {
        gated_mlp(l, -1, L.mlp, h_.data(), n, tmp_.data(), false);
        add_residual(tmp_.data(), {}, L.mlp_out_norm, n, H, eps);
      }
    }
  };
  // Small steps (decode) on a backend that records (CUDA graphs): the layer loop is replayed from a
  // recording of the same shape, one launch instead of some twenty per layer. The key holds what the
  // loop's ops depend on besides the bound cache (which the backend adds): the batch size and the
  // addresses of the buffers they use (a buffer that grew invalidates the recordings).
  const bool recordable = n <= 16 && !observer_ && (!comm_ || comm_->recordable()) && !c.mla.enabled() && c.moe.num_experts == 0;
  if (!recordable) {
    run_layers();
  } else {
    const auto u = [](const Buffer& b) { return static_cast<uint64_t>(reinterpret_cast<uintptr_t>(b.data())); };
    const uint64_t key[] = {static_cast<uint64_t>(n), u(x_), u(h_), u(qkv_), u(q_), u(k_), u(attn_), u(tmp_), u(mlp_),
                            u(act_), u(part_), u(cos_), u(sin_), u(tp_in_), u(tp_out_), u(tp_gather_)};
    if (!be.replay(*ctx_, key)) {
      const bool recording = be.begin_recording(*ctx_, key);
      try {
        run_layers();
      } catch (...) {
        if (recording) be.abort_recording(*ctx_);
        throw;
      }
      if (recording && !be.end_recording(*ctx_)) run_layers();  // the recording failed: run the ops
    }
  }

  // Final norm and LM head for the entries that want logits.
  std::vector<int32_t> rows;
  for (int64_t t = 0; t < n; ++t)
    if (batch[t].logits) rows.push_back(static_cast<int32_t>(t));
  const int64_t m = static_cast<int64_t>(rows.size());
  // Kept on the device (step_kept): no host copy.
  std::vector<float> none;
  std::vector<float>& logits = logits_out ? *logits_out : none;
  if (logits_out) logits.resize(static_cast<size_t>(m * c.vocab_size));
  kept_dev_ = nullptr;
  kept_rows_ = 0;
  if (m == 0) return;
  xs_.resize(n * H);
  be.gather_rows(*ctx_, xs_.data(), x_.data(), rows, H);
  be.rmsnorm_for(&model_.lm_head(), xs_.data(), be.vector(model_.final_norm()), m, H, eps, h_.data());
  if (observer_) observer_(head_name_, h_.data(), m, H);
  // On the host the logits are computed in place; a device computes them in part_ and sends them.
  // A tensor-parallel rank computes its vocabulary rows (in part_) and gathers the others'.
  const int64_t V = model_.lm_head().rows();
  if (!be.host_memory() || comm_) part_.resize(static_cast<size_t>(m * V));
  float* out = be.host_memory() && !comm_ ? logits.data() : part_.data();
  be.matmul(model_.lm_head(), h_.data(), m, out);
  if (blk.logit_scale != 1) be.scale(out, m * V, static_cast<float>(blk.logit_scale));
  if (blk.final_softcap > 0) be.softcap(out, m * V, static_cast<float>(blk.final_softcap));
  if (comm_) {
    float* all = logits.data();
    if (!be.host_memory()) {
      tp_in_.resize(static_cast<size_t>(m * c.vocab_size));
      all = tp_in_.data();
    }
    gather_columns(out, m, tp_vocab_, all);
    if (!be.host_memory() && !logits_out) kept_dev_ = all, kept_rows_ = m;
    else if (!be.host_memory()) be.download(logits.data(), all, sizeof(float) * m * c.vocab_size);
  } else if (!be.host_memory()) {
    UPG_CHECK(V == c.vocab_size, "the LM head has ", V, " rows for a vocabulary of ", c.vocab_size);
    if (!logits_out) kept_dev_ = out, kept_rows_ = m;
    else be.download(logits.data(), out, sizeof(float) * m * c.vocab_size);
  }
}

void Engine::add_residual(float* y, const std::vector<float>& bias, const std::vector<float>& norm, int64_t n,
                          int64_t H, float eps) {
  Backend& be = *backend_;
  if (!bias.empty()) be.add_bias(y, be.vector(bias), n, H, H);
  if (!norm.empty()) be.rmsnorm(y, be.vector(norm), n, H, eps, y);
  be.add(x_.data(), y, n * H);
}

}  // namespace upg
