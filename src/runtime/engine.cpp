#include "runtime/engine.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "base/error.h"
#include "kernels/cpu/activation.h"
#include "kernels/cpu/attention.h"
#include "kernels/cpu/norm.h"
#include "kernels/cpu/rope.h"

namespace upg {

Engine::Engine(const Model& model, const EngineOptions& o)
    : model_(model),
      cache_(model.config().num_hidden_layers, kv_geometry(model.config()).kv_heads,
             kv_geometry(model.config()).head_dim, o.kv, kv_geometry(model.config()).keys_only) {}

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

void Engine::set_observer(Observer observer) {
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
  if (parts.size() == 1) {
    parts[0]->matmul(in, n, out);
  } else {
    int64_t off = 0;
    for (const auto& w : parts) {
      part_.resize(static_cast<size_t>(n * w->rows()));
      w->matmul(in, n, part_.data());
      for (int64_t t = 0; t < n; ++t)
        std::memcpy(out + t * out_width + off, part_.data() + t * w->rows(), sizeof(float) * w->rows());
      off += w->rows();
    }
  }
  if (!bias.empty())
    for (int64_t t = 0; t < n; ++t)
      for (int64_t j = 0; j < out_width; ++j) out[t * out_width + j] += bias[j];
}

void Engine::step(std::span<const BatchEntry> batch, std::vector<float>& logits) {
  const ModelConfig& c = model_.config();
  const int64_t n = static_cast<int64_t>(batch.size());
  UPG_CHECK(n > 0, "step: empty batch");

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
  const WeightMatrix& embed = model_.embed_tokens();
  for (int64_t t = 0; t < n; ++t) embed.decode_rows(batch[t].token, batch[t].token + 1, x_.data() + t * H);
  if (blk.embedding_scale != 1) {
    const float s = static_cast<float>(blk.embedding_scale);
    for (float& v : x_) v *= s;
  }

  // Rotary angles per token, with its sequence's frequencies (which may depend on its length).
  const int64_t half = c.rotary_dim / 2;
  cos_.resize(n * half);
  sin_.resize(n * half);
  {
    std::map<SeqId, const RopeFrequencies*> fr;
    for (const auto& [s, end] : next) fr[s] = &frequencies(states_.at(s), end);
    for (int64_t t = 0; t < n; ++t) {
      const RopeFrequencies& f = *fr[batch[t].seq];
      kernels::rope_cos_sin(f.inv_freq.data(), half, f.attention_scaling, batch[t].pos, 1, cos_.data() + t * half,
                            sin_.data() + t * half);
    }
  }

  int64_t max_pos = 0;
  for (const BatchEntry& e : batch) max_pos = std::max(max_pos, e.pos);
  const double scale = blk.attention_scale > 0 ? blk.attention_scale : 1.0 / std::sqrt(static_cast<double>(hd));
  kernels::AttentionShape as{nh, nkv, hd, 0, static_cast<float>(scale), static_cast<float>(blk.attention_softcap)};
  std::vector<KvLayerView> views(static_cast<size_t>(n));
  const auto& layers = model_.layers();
  for (size_t l = 0; l < layers.size(); ++l) {
    const LayerWeights& L = layers[l];
    kernels::rmsnorm(x_.data(), L.input_norm.data(), n, H, eps, h_.data());
    if (observer_) observe(l, LinearInput::AttnIn, h_.data(), n, H);
    for (int64_t t = 0; t < n; ++t) views[t] = cache_.view(batch[t].seq, static_cast<int64_t>(l));
    if (c.mla.enabled()) {
      mla_attention(l, batch, views, max_pos);
    } else {
    project(L.qkv, L.qkv_bias, h_.data(), n, qkv_.data(), qkv_out);
    for (int64_t t = 0; t < n; ++t) {
      const float* row = qkv_.data() + t * qkv_out;
      std::memcpy(q_.data() + t * q_out, row, sizeof(float) * q_out);
      std::memcpy(k_.data() + t * kv_out, row + q_out, sizeof(float) * kv_out);
    }
    kernels::apply_rope(q_.data(), n, nh, hd, c.rotary_dim, cos_.data(), sin_.data());
    kernels::apply_rope(k_.data(), n, nkv, hd, c.rotary_dim, cos_.data(), sin_.data());
    for (int64_t t = 0; t < n; ++t) {
      for (int64_t g = 0; g < nkv; ++g) {
        kernels::kv_store_row(views[t].type, k_.data() + (t * nkv + g) * hd, hd, views[t].row(0, g, batch[t].pos));
        kernels::kv_store_row(views[t].type, qkv_.data() + t * qkv_out + q_out + kv_out + g * hd, hd,
                              views[t].row(1, g, batch[t].pos));
      }
    }
    as.window = L.window;
    const int64_t group = nh / nkv;
#pragma omp parallel
    {
      std::vector<float> scores(static_cast<size_t>(max_pos + 1)), tmp(static_cast<size_t>(hd));
#pragma omp for collapse(2) schedule(dynamic, 4)
      for (int64_t t = 0; t < n; ++t)
        for (int64_t h = 0; h < nh; ++h)
          kernels::attention_head(as, views[t], h / group, q_.data() + (t * nh + h) * hd, batch[t].pos,
                                  scores.data(), tmp.data(), attn_.data() + (t * nh + h) * hd);
    }
    }
    if (observer_) observe(l, LinearInput::AttnOut, attn_.data(), n, L.o->cols());
    L.o->matmul(attn_.data(), n, tmp_.data());
    add_residual(tmp_.data(), L.o_bias, L.attn_out_norm, n, H, eps);

    kernels::rmsnorm(x_.data(), L.post_attention_norm.data(), n, H, eps, h_.data());
    if (observer_) observe(l, LinearInput::MlpIn, h_.data(), n, H);
    if (L.router) moe_mlp(l, h_.data(), n, tmp_.data());
    else gated_mlp(l, -1, L.mlp, h_.data(), n, tmp_.data(), false);
    add_residual(tmp_.data(), {}, L.mlp_out_norm, n, H, eps);
  }

  // Final norm and LM head for the entries that want logits.
  int64_t m = 0;
  xs_.resize(n * H);
  for (int64_t t = 0; t < n; ++t)
    if (batch[t].logits) std::memcpy(xs_.data() + (m++) * H, x_.data() + t * H, sizeof(float) * H);
  logits.resize(static_cast<size_t>(m * c.vocab_size));
  if (m == 0) return;
  kernels::rmsnorm(xs_.data(), model_.final_norm().data(), m, H, eps, h_.data());
  if (observer_) observer_(head_name_, h_.data(), m, H);
  model_.lm_head().matmul(h_.data(), m, logits.data());
  if (blk.logit_scale != 1) {
    const float s = static_cast<float>(blk.logit_scale);
    for (float& v : logits) v *= s;
  }
  if (blk.final_softcap > 0) kernels::softcap(logits.data(), m * c.vocab_size, static_cast<float>(blk.final_softcap));
}

void Engine::add_residual(float* y, const std::vector<float>& bias, const std::vector<float>& norm, int64_t n,
                          int64_t H, float eps) {
  if (!bias.empty())
    for (int64_t t = 0; t < n; ++t)
      for (int64_t i = 0; i < H; ++i) y[t * H + i] += bias[i];
  if (!norm.empty()) kernels::rmsnorm(y, norm.data(), n, H, eps, y);
  for (int64_t i = 0; i < n * H; ++i) x_[i] += y[i];
}

}  // namespace upg
