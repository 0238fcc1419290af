// Multi-head latent attention (DeepSeek V2/V3; ModelConfig::mla) in the absorbed form: the cache
// holds one latent row per position, [RMSNorm(c) | RoPE(k_rope)] (kv_lora_rank + qk_rope_head_dim
// values), and each head attends with q' = [W_uk,h^T q_nope,h | RoPE(q_rope,h)], so that
//   q' . row = q_nope,h . (W_uk,h c) + q_rope,h . k_rope      (the expanded form's score)
// and its output is W_uv,h (sum_s p_s c_s) = sum_s p_s (W_uv,h c_s). kv_b_proj's input, the normed
// latent, is what the calibration observer sees under its name.
#include "runtime/engine.h"

namespace upg {

void Engine::mla_attention(size_t l, int64_t n) {
  const ModelConfig& c = model_.config();
  const MlaConfig& a = c.mla;
  const LayerWeights::Mla& W = model_.layers()[l].mla;
  Backend& be = *backend_;
  const int64_t nh = c.num_attention_heads;
  const int64_t nope = a.qk_nope_head_dim, rope = a.qk_rope_head_dim, qd = a.qk_head_dim(), r = a.kv_lora_rank;
  const int64_t vd = a.v_head_dim, row = r + rope;
  const float eps = static_cast<float>(c.rms_norm_eps);

  // Queries: heads x [nope | rope].
  mla_q_.resize(static_cast<size_t>(n * nh * qd));
  if (W.q) {
    be.matmul(*W.q, h_.data(), n, mla_q_.data());
  } else {
    const int64_t qr = a.q_lora_rank;
    mla_qa_.resize(static_cast<size_t>(n * qr));
    be.matmul(*W.q_a, h_.data(), n, mla_qa_.data());
    be.rmsnorm(mla_qa_.data(), be.vector(W.q_a_norm), n, qr, eps, mla_qa_.data());
    if (observer_) observe(l, LinearInput::QLatent, mla_qa_.data(), n, qr);
    be.matmul(*W.q_b, mla_qa_.data(), n, mla_q_.data());
  }
  // The latent [c | k_rope]; c normed (through a copy of its columns: the norm takes whole rows).
  mla_kv_.resize(static_cast<size_t>(n * row));
  be.matmul(*W.kv_a, h_.data(), n, mla_kv_.data());
  mla_lat_.resize(static_cast<size_t>(n * r));
  be.copy_columns(mla_lat_.data(), r, mla_kv_.data(), row, n, r);
  be.rmsnorm(mla_lat_.data(), be.vector(W.kv_a_norm), n, r, eps, mla_lat_.data());
  if (observer_) observe(l, LinearInput::KvLatent, mla_lat_.data(), n, r);
  be.copy_columns(mla_kv_.data(), row, mla_lat_.data(), r, n, r);
  // RoPE on each head's rope part and on k_rope (one "head" of stride row, at offset r).
  if (a.rope_interleave) {
    be.deinterleave_pairs(mla_q_.data() + nope, n * nh, qd, rope);
    be.deinterleave_pairs(mla_kv_.data() + r, n, row, rope);
  }
  be.rope(mla_q_.data() + nope, n, nh, qd, rope, cos_.data(), sin_.data());
  be.rope(mla_kv_.data() + r, n, 1, row, rope, cos_.data(), sin_.data());
  be.store_kv(*ctx_, static_cast<int64_t>(l), 0, mla_kv_.data(), row, 1);

  // Queries in latent space: [W_uk,h^T q_nope,h | q_rope,h].
  mla_ql_.resize(static_cast<size_t>(n * nh * row));
  be.head_products(be.vector(W.w_uk), true, nh, nope, r, mla_q_.data(), qd, n, mla_ql_.data(), row);
  be.copy_columns(mla_ql_.data() + r, row, mla_q_.data() + nope, qd, n * nh, rope);

  // Attention over the latent rows, then each head's latent output through W_uv,h.
  mla_lat_.resize(static_cast<size_t>(n * nh * r));
  const AttentionSpec as{nh, 1, row, model_.layers()[l].window, static_cast<float>(c.block.attention_scale),
                         static_cast<float>(c.block.attention_softcap), r};
  be.attention(*ctx_, static_cast<int64_t>(l), as, mla_ql_.data(), mla_lat_.data());
  be.head_products(be.vector(W.w_uv), false, nh, vd, r, mla_lat_.data(), r, n, attn_.data(), vd);
}

}  // namespace upg
