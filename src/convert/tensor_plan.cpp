#include "convert/tensor_plan.h"

namespace upg {

std::vector<PlannedTensor> plan_model_tensors(const ModelConfig& c, const ArchSpec& a) {
  const int64_t H = c.hidden_size, hd = c.head_dim, q_out = c.num_attention_heads * hd,
                kv_out = c.num_key_value_heads * hd, I = c.intermediate_size;
  std::vector<PlannedTensor> t;
  auto lin = [&](std::string n, int64_t r, int64_t k) { t.push_back({std::move(n), {r, k}, TensorRole::Linear}); };
  auto vec = [&](std::string n, int64_t k) { t.push_back({std::move(n), {k}, TensorRole::Vector}); };
  t.push_back({"model.embed_tokens.weight", {c.vocab_size, H}, TensorRole::Embedding});
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    vec(p + "input_layernorm.weight", H);
    if (a.fused_qkv) {
      lin(p + "self_attn.qkv_proj.weight", q_out + 2 * kv_out, H);
      if (c.attention_bias) vec(p + "self_attn.qkv_proj.bias", q_out + 2 * kv_out);
    } else {
      lin(p + "self_attn.q_proj.weight", q_out, H);
      lin(p + "self_attn.k_proj.weight", kv_out, H);
      lin(p + "self_attn.v_proj.weight", kv_out, H);
      if (c.attention_bias) {
        vec(p + "self_attn.q_proj.bias", q_out);
        vec(p + "self_attn.k_proj.bias", kv_out);
        vec(p + "self_attn.v_proj.bias", kv_out);
      }
    }
    lin(p + "self_attn.o_proj.weight", H, q_out);
    if (c.o_proj_bias) vec(p + "self_attn.o_proj.bias", H);
    vec(p + "post_attention_layernorm.weight", H);
    if (a.fused_gate_up) {
      lin(p + "mlp.gate_up_proj.weight", 2 * I, H);
      if (c.mlp_bias) vec(p + "mlp.gate_up_proj.bias", 2 * I);
    } else {
      lin(p + "mlp.gate_proj.weight", I, H);
      lin(p + "mlp.up_proj.weight", I, H);
      if (c.mlp_bias) {
        vec(p + "mlp.gate_proj.bias", I);
        vec(p + "mlp.up_proj.bias", I);
      }
    }
    lin(p + "mlp.down_proj.weight", H, I);
    if (c.mlp_bias) vec(p + "mlp.down_proj.bias", H);
  }
  vec("model.norm.weight", H);
  if (!c.tie_word_embeddings) t.push_back({"lm_head.weight", {c.vocab_size, H}, TensorRole::LmHead});
  return t;
}

}  // namespace upg
