#include "runtime/model.h"

#include "base/error.h"

namespace upg {

std::unique_ptr<Model> Model::load(const std::string& path) { return load(open_weight_source(path)); }

std::unique_ptr<Model> Model::load(std::unique_ptr<WeightSource> source) {
  std::unique_ptr<Model> m(new Model());
  const WeightSource& src = *source;
  m->config_ = parse_model_config(src.config(), src.path() + "/config.json");
  const ModelConfig& c = m->config_;
  m->arch_ = &get_arch(c.architecture, src.path());
  const ArchSpec& a = *m->arch_;
  const int64_t H = c.hidden_size, hd = c.head_dim, q_out = c.num_attention_heads * hd,
                kv_out = c.num_key_value_heads * hd, I = c.intermediate_size;

  m->embed_ = src.matrix("model.embed_tokens.weight", c.vocab_size, H);
  if (c.tie_word_embeddings) {
    // transformers ties lm_head to the embeddings; a stored lm_head.weight is ignored then.
  } else {
    m->lm_head_ = src.matrix("lm_head.weight", c.vocab_size, H);
  }
  m->final_norm_ = src.vector("model.norm.weight", H);

  m->layers_.resize(static_cast<size_t>(c.num_hidden_layers));
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    LayerWeights& L = m->layers_[i];
    const std::string p = "model.layers." + std::to_string(i) + ".";
    if (a.fused_qkv) {
      L.qkv.push_back(src.matrix(p + "self_attn.qkv_proj.weight", q_out + 2 * kv_out, H));
    } else {
      L.qkv.push_back(src.matrix(p + "self_attn.q_proj.weight", q_out, H));
      L.qkv.push_back(src.matrix(p + "self_attn.k_proj.weight", kv_out, H));
      L.qkv.push_back(src.matrix(p + "self_attn.v_proj.weight", kv_out, H));
    }
    if (c.attention_bias) {
      if (a.fused_qkv) {
        L.qkv_bias = src.vector(p + "self_attn.qkv_proj.bias", q_out + 2 * kv_out);
      } else {
        L.qkv_bias = src.vector(p + "self_attn.q_proj.bias", q_out);
        auto kb = src.vector(p + "self_attn.k_proj.bias", kv_out);
        auto vb = src.vector(p + "self_attn.v_proj.bias", kv_out);
        L.qkv_bias.insert(L.qkv_bias.end(), kb.begin(), kb.end());
        L.qkv_bias.insert(L.qkv_bias.end(), vb.begin(), vb.end());
      }
    }
    L.o = src.matrix(p + "self_attn.o_proj.weight", H, q_out);
    if (c.o_proj_bias) L.o_bias = src.vector(p + "self_attn.o_proj.bias", H);
    if (a.fused_gate_up) {
      L.gate_up.push_back(src.matrix(p + "mlp.gate_up_proj.weight", 2 * I, H));
      if (c.mlp_bias) L.gate_up_bias = src.vector(p + "mlp.gate_up_proj.bias", 2 * I);
    } else {
      L.gate_up.push_back(src.matrix(p + "mlp.gate_proj.weight", I, H));
      L.gate_up.push_back(src.matrix(p + "mlp.up_proj.weight", I, H));
      if (c.mlp_bias) {
        L.gate_up_bias = src.vector(p + "mlp.gate_proj.bias", I);
        auto ub = src.vector(p + "mlp.up_proj.bias", I);
        L.gate_up_bias.insert(L.gate_up_bias.end(), ub.begin(), ub.end());
      }
    }
    L.down = src.matrix(p + "mlp.down_proj.weight", H, I);
    if (c.mlp_bias) L.down_bias = src.vector(p + "mlp.down_proj.bias", H);
    L.input_norm = src.vector(p + "input_layernorm.weight", H);
    L.post_attention_norm = src.vector(p + "post_attention_layernorm.weight", H);
    L.window = c.layer_window[static_cast<size_t>(i)];
  }
  m->source_ = std::move(source);
  return m;
}

size_t Model::weight_bytes() const {
  size_t b = embed_->stored_bytes() + (lm_head_ ? lm_head_->stored_bytes() : 0);
  for (const auto& L : layers_) {
    for (const auto& w : L.qkv) b += w->stored_bytes();
    for (const auto& w : L.gate_up) b += w->stored_bytes();
    b += L.o->stored_bytes() + L.down->stored_bytes();
  }
  return b;
}

}  // namespace upg
