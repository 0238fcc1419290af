// Multi-head latent attention (DeepSeek V2/V3; ModelConfig::mla) in the absorbed form: the cache
// holds one latent row per position, [RMSNorm(c) | RoPE(k_rope)] (kv_lora_rank + qk_rope_head_dim
// values), and each head attends with q' = [W_uk,h^T q_nope,h | RoPE(q_rope,h)], so that
//   q' . row = q_nope,h . (W_uk,h c) + q_rope,h . k_rope      (the expanded form's score)
// and its output is W_uv,h (sum_s p_s c_s) = sum_s p_s (W_uv,h c_s). kv_b_proj's input, the normed
// latent, is what the calibration observer sees under its name.
#include <algorithm>
#include <cstring>

#include "base/thread_pool.h"
#include "kernels/cpu/attention.h"
#include "kernels/cpu/norm.h"
#include "kernels/cpu/rope.h"
#include "runtime/engine.h"

namespace upg {

namespace {
// Pairs (x0, x1), (x2, x3), ... of d values become the halves [x0 x2 ... | x1 x3 ...], the layout
// the rotate-half RoPE expects (transformers' apply_rotary_pos_emb_interleave).
void deinterleave(float* x, int64_t d, float* tmp) {
  for (int64_t j = 0; j < d / 2; ++j) {
    tmp[j] = x[2 * j];
    tmp[d / 2 + j] = x[2 * j + 1];
  }
  std::memcpy(x, tmp, sizeof(float) * d);
}
}  // namespace

void Engine::mla_attention(size_t l, std::span<const BatchEntry> batch, const std::vector<KvLayerView>& views,
                           int64_t max_pos) {
  const ModelConfig& c = model_.config();
  const MlaConfig& a = c.mla;
  const LayerWeights::Mla& W = model_.layers()[l].mla;
  const int64_t n = static_cast<int64_t>(batch.size()), nh = c.num_attention_heads;
  const int64_t nope = a.qk_nope_head_dim, rope = a.qk_rope_head_dim, qd = a.qk_head_dim(), r = a.kv_lora_rank;
  const int64_t vd = a.v_head_dim, row = r + rope;
  const float eps = static_cast<float>(c.rms_norm_eps);

  // Queries: heads x [nope | rope].
  mla_q_.resize(static_cast<size_t>(n * nh * qd));
  if (W.q) {
    W.q->matmul(h_.data(), n, mla_q_.data());
  } else {
    const int64_t qr = a.q_lora_rank;
    mla_qa_.resize(static_cast<size_t>(n * qr));
    W.q_a->matmul(h_.data(), n, mla_qa_.data());
    kernels::rmsnorm(mla_qa_.data(), W.q_a_norm.data(), n, qr, eps, mla_qa_.data());
    if (observer_) observe(l, LinearInput::QLatent, mla_qa_.data(), n, qr);
    W.q_b->matmul(mla_qa_.data(), n, mla_q_.data());
  }
  // The latent [c | k_rope]; c normed.
  mla_kv_.resize(static_cast<size_t>(n * row));
  W.kv_a->matmul(h_.data(), n, mla_kv_.data());
  for (int64_t t = 0; t < n; ++t) {
    float* kv = mla_kv_.data() + t * row;
    kernels::rmsnorm(kv, W.kv_a_norm.data(), 1, r, eps, kv);
  }
  if (observer_) {
    std::vector<float> latent(static_cast<size_t>(n * r));
    for (int64_t t = 0; t < n; ++t) std::memcpy(latent.data() + t * r, mla_kv_.data() + t * row, sizeof(float) * r);
    observe(l, LinearInput::KvLatent, latent.data(), n, r);
  }
  // RoPE on each head's rope part and on k_rope (one "head" of stride row, at offset r).
  std::vector<float> tmp(static_cast<size_t>(rope));
  if (a.rope_interleave)
    for (int64_t t = 0; t < n; ++t) {
      for (int64_t h = 0; h < nh; ++h) deinterleave(mla_q_.data() + (t * nh + h) * qd + nope, rope, tmp.data());
      deinterleave(mla_kv_.data() + t * row + r, rope, tmp.data());
    }
  kernels::apply_rope(mla_q_.data() + nope, n, nh, qd, rope, cos_.data(), sin_.data());
  kernels::apply_rope(mla_kv_.data() + r, n, 1, row, rope, cos_.data(), sin_.data());
  for (int64_t t = 0; t < n; ++t)
    kernels::kv_store_row(views[t].type, mla_kv_.data() + t * row, row, views[t].row(0, 0, batch[t].pos));

  // Queries in latent space: [W_uk,h^T q_nope,h | q_rope,h].
  mla_ql_.resize(static_cast<size_t>(n * nh * row));
  parallel_for(n * nh, [&](int64_t i0, int64_t i1) {  // (token, head) pairs
    for (int64_t th = i0; th < i1; ++th) {
      const int64_t h = th % nh;
      const float* q = mla_q_.data() + th * qd;
      float* o = mla_ql_.data() + th * row;
      std::fill(o, o + r, 0.0f);
      const float* wk = W.w_uk.data() + h * nope * r;
      for (int64_t i = 0; i < nope; ++i)
        for (int64_t j = 0; j < r; ++j) o[j] += q[i] * wk[i * r + j];
      std::memcpy(o + r, q + nope, sizeof(float) * rope);
    }
  });

  // Attention over the latent rows, then each head's latent output through W_uv,h.
  kernels::AttentionShape as{nh, 1, row, model_.layers()[l].window, static_cast<float>(c.block.attention_scale),
                             static_cast<float>(c.block.attention_softcap), r};
  parallel_for_dynamic(n * nh, 4, [&](int64_t i0, int64_t i1) {  // (token, head) pairs
    thread_local std::vector<float> scores, kvtmp, latent;  // per thread, kept between calls
    scores.resize(std::max(scores.size(), static_cast<size_t>(max_pos + 1)));
    kvtmp.resize(std::max(kvtmp.size(), static_cast<size_t>(row)));
    latent.resize(std::max(latent.size(), static_cast<size_t>(r)));
    for (int64_t th = i0; th < i1; ++th) {
      const int64_t t = th / nh, h = th % nh;
      kernels::attention_head(as, views[t], 0, mla_ql_.data() + th * row, batch[t].pos, scores.data(), kvtmp.data(),
                              latent.data());
      const float* wv = W.w_uv.data() + h * vd * r;
      float* out = attn_.data() + th * vd;
      for (int64_t i = 0; i < vd; ++i) {
        float s = 0;
        for (int64_t j = 0; j < r; ++j) s += wv[i * r + j] * latent[j];
        out[i] = s;
      }
    }
  });
}

}  // namespace upg
