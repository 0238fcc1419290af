#include "runtime/model.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "base/error.h"
#include "kernels/cpu/activation.h"
#include "kernels/cpu/attention.h"
#include "kernels/cpu/norm.h"
#include "kernels/cpu/rope.h"

namespace upg {

Session::Session(const Model& model, int max_context) : model_(model) {
  const ModelConfig& c = model.config();
  capacity_ = max_context > 0 ? max_context : c.max_position_embeddings;
  const size_t per = static_cast<size_t>(c.num_key_value_heads) * static_cast<size_t>(capacity_) *
                     static_cast<size_t>(c.head_dim);
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    // new float[] leaves the memory untouched: pages are committed only as positions are written.
    k_cache_.emplace_back(new float[per]);
    v_cache_.emplace_back(new float[per]);
  }
}

void Session::reset() {
  pos_ = 0;
  dynamic_ = DynamicRopeState();
}

void Session::truncate(int pos) {
  UPG_CHECK(pos >= 0 && pos <= pos_, "cannot truncate the session to position ", pos, ": it holds ", pos_,
            " positions");
  pos_ = pos;
}

void Session::set_observer(Observer observer) {
  observer_ = std::move(observer);
  observed_names_.clear();
  if (!observer_) return;
  const ArchSpec& a = model_.arch();
  for (size_t l = 0; l < model_.layers().size(); ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    std::array<std::vector<std::string>, 4> n;
    if (a.fused_qkv) n[0] = {p + "self_attn.qkv_proj.weight"};
    else n[0] = {p + "self_attn.q_proj.weight", p + "self_attn.k_proj.weight", p + "self_attn.v_proj.weight"};
    n[1] = {p + "self_attn.o_proj.weight"};
    if (a.fused_gate_up) n[2] = {p + "mlp.gate_up_proj.weight"};
    else n[2] = {p + "mlp.gate_proj.weight", p + "mlp.up_proj.weight"};
    n[3] = {p + "mlp.down_proj.weight"};
    observed_names_.push_back(std::move(n));
  }
}

void Session::observe(size_t layer, int slot, const float* x, int64_t n, int64_t cols) const {
  for (const std::string& name : observed_names_[layer][slot]) observer_(name, x, n, cols);
}

const RopeFrequencies& Session::frequencies(int64_t seq_len) {
  const ModelConfig& c = model_.config();
  int64_t len = 0;  // the length the frequencies depend on (0: they do not)
  if (c.rope.type == "longrope") len = seq_len > c.rope.original_max_position_embeddings ? 2 : 1;
  else if (c.rope.type == "dynamic") len = dynamic_.update(c, seq_len);
  if (freq_len_ != len) {
    freq_ = rope_frequencies(c, c.rope.type == "longrope" ? seq_len : len);
    freq_len_ = len;
  }
  return freq_;
}

void Session::project(const std::vector<std::unique_ptr<WeightMatrix>>& parts, const std::vector<float>& bias,
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

void Session::forward(std::span<const int32_t> tokens, std::vector<float>& logits, bool all_logits) {
  const ModelConfig& c = model_.config();
  const int64_t n = static_cast<int64_t>(tokens.size());
  UPG_CHECK(n > 0, "forward: no tokens given");
  UPG_CHECK(pos_ + n <= capacity_, "forward: ", n, " tokens at position ", pos_, " exceed the context of ",
            capacity_, " tokens (", pos_ + n, " needed)");
  for (int64_t t = 0; t < n; ++t)
    UPG_CHECK(tokens[t] >= 0 && tokens[t] < c.vocab_size, "forward: token id ", tokens[t], " at index ", t,
              " is out of range [0, ", c.vocab_size, ")");

  const int64_t H = c.hidden_size, hd = c.head_dim, nh = c.num_attention_heads, nkv = c.num_key_value_heads;
  const int64_t q_out = nh * hd, kv_out = nkv * hd, qkv_out = q_out + 2 * kv_out, I = c.intermediate_size;
  const float eps = static_cast<float>(c.rms_norm_eps);
  x_.resize(n * H);
  h_.resize(n * H);
  qkv_.resize(n * qkv_out);
  q_.resize(n * q_out);
  k_.resize(n * kv_out);
  attn_.resize(n * q_out);
  tmp_.resize(n * H);
  mlp_.resize(n * 2 * I);
  act_.resize(n * I);

  const WeightMatrix& embed = model_.embed_tokens();
  for (int64_t t = 0; t < n; ++t) embed.decode_rows(tokens[t], tokens[t] + 1, x_.data() + t * H);

  const RopeFrequencies& fr = frequencies(pos_ + n);
  const int64_t half = c.rotary_dim / 2;
  cos_.resize(n * half);
  sin_.resize(n * half);
  kernels::rope_cos_sin(fr.inv_freq.data(), half, fr.attention_scaling, pos_, n, cos_.data(), sin_.data());

  kernels::AttentionShape as{nh, nkv, hd, capacity_, 0, static_cast<float>(1.0 / std::sqrt(static_cast<double>(hd)))};
  const auto& layers = model_.layers();
  for (size_t l = 0; l < layers.size(); ++l) {
    const LayerWeights& L = layers[l];
    kernels::rmsnorm(x_.data(), L.input_norm.data(), n, H, eps, h_.data());
    if (observer_) observe(l, 0, h_.data(), n, H);
    project(L.qkv, L.qkv_bias, h_.data(), n, qkv_.data(), qkv_out);
    for (int64_t t = 0; t < n; ++t) {
      const float* row = qkv_.data() + t * qkv_out;
      std::memcpy(q_.data() + t * q_out, row, sizeof(float) * q_out);
      std::memcpy(k_.data() + t * kv_out, row + q_out, sizeof(float) * kv_out);
    }
    kernels::apply_rope(q_.data(), n, nh, hd, c.rotary_dim, cos_.data(), sin_.data());
    kernels::apply_rope(k_.data(), n, nkv, hd, c.rotary_dim, cos_.data(), sin_.data());
    float* kc = k_cache_[l].get();
    float* vc = v_cache_[l].get();
    for (int64_t t = 0; t < n; ++t)
      for (int64_t g = 0; g < nkv; ++g) {
        const size_t dst = (static_cast<size_t>(g) * capacity_ + (pos_ + t)) * hd;
        std::memcpy(kc + dst, k_.data() + (t * nkv + g) * hd, sizeof(float) * hd);
        std::memcpy(vc + dst, qkv_.data() + t * qkv_out + q_out + kv_out + g * hd, sizeof(float) * hd);
      }
    as.window = L.window;
    kernels::attention(as, q_.data(), n, pos_, kc, vc, attn_.data());
    if (observer_) observe(l, 1, attn_.data(), n, q_out);
    L.o->matmul(attn_.data(), n, tmp_.data());
    for (int64_t i = 0; i < n * H; ++i) x_[i] += tmp_[i] + (L.o_bias.empty() ? 0.f : L.o_bias[i % H]);

    kernels::rmsnorm(x_.data(), L.post_attention_norm.data(), n, H, eps, h_.data());
    if (observer_) observe(l, 2, h_.data(), n, H);
    project(L.gate_up, L.gate_up_bias, h_.data(), n, mlp_.data(), 2 * I);
    for (int64_t t = 0; t < n; ++t)
      kernels::silu_mul(mlp_.data() + t * 2 * I, mlp_.data() + t * 2 * I + I, act_.data() + t * I, I);
    if (observer_) observe(l, 3, act_.data(), n, I);
    L.down->matmul(act_.data(), n, tmp_.data());
    for (int64_t i = 0; i < n * H; ++i) x_[i] += tmp_[i] + (L.down_bias.empty() ? 0.f : L.down_bias[i % H]);
  }

  const int64_t first = all_logits ? 0 : n - 1, m = n - first;
  kernels::rmsnorm(x_.data() + first * H, model_.final_norm().data(), m, H, eps, h_.data());
  logits.resize(static_cast<size_t>(m * c.vocab_size));
  if (observer_)
    observer_(c.tie_word_embeddings ? "model.embed_tokens.weight" : "lm_head.weight", h_.data(), m, H);
  model_.lm_head().matmul(h_.data(), m, logits.data());
  pos_ += n;
}

}  // namespace upg
