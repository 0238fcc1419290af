// Test helper: writes small random-weight Hugging Face model directories with the safetensors
// writer, and a naive double-precision reference forward pass written directly from the
// transformers modeling code (no KV cache, no shared kernels) to check the engine against.
#pragma once
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "base/half.h"
#include "format/safetensors.h"
#include "models/model_config.h"
#include "models/registry.h"
#include "models/rope.h"

namespace upg::test {

inline nlohmann::json tiny_config(const std::string& arch, const std::string& model_type) {
  return {{"architectures", {arch}}, {"model_type", model_type}, {"vocab_size", 96},
          {"hidden_size", 64},       {"intermediate_size", 96},  {"num_hidden_layers", 2},
          {"num_attention_heads", 4}, {"num_key_value_heads", 2}, {"rms_norm_eps", 1e-5},
          {"max_position_embeddings", 128}, {"hidden_act", "silu"}, {"bos_token_id", 1},
          {"eos_token_id", 2},       {"tie_word_embeddings", false}, {"rope_theta", 10000.0}};
}

struct TinyWeights {
  std::map<std::string, std::vector<float>> t;  // fp32 values (after rounding to the storage dtype)
  std::map<std::string, std::vector<int64_t>> shape;
};

// Writes config.json and model.safetensors (dtype F32, F16 or BF16) into dir; returns the weights
// (rounded to the storage dtype) for the reference implementation.
inline TinyWeights write_tiny_model(const std::string& dir, const nlohmann::json& cfg_json,
                                    TensorDType dtype = TensorDType::BF16, uint32_t seed = 1) {
  std::filesystem::create_directories(dir);
  std::ofstream(dir + "/config.json") << cfg_json.dump(2);
  const ModelConfig c = parse_model_config(cfg_json, "tiny");
  // The test's own knowledge of the layouts (independent of the tables in src/models/).
  const bool fused = c.architecture == "Phi3ForCausalLM";
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.f, 1.f);
  TinyWeights w;
  auto add = [&](const std::string& name, std::vector<int64_t> shape, float scale, float offset = 0.f) {
    int64_t n = 1;
    for (auto d : shape) n *= d;
    std::vector<float> v(n);
    for (auto& x : v) {
      float f = offset + scale * nd(rng);
      if (dtype == TensorDType::BF16) f = bf16_to_f32(f32_to_bf16(f));
      if (dtype == TensorDType::F16) f = f16_to_f32(f32_to_f16(f));
      x = f;
    }
    w.t[name] = v;
    w.shape[name] = shape;
  };
  const int64_t H = c.hidden_size, hd = c.head_dim, qo = c.num_attention_heads * hd,
                kvo = c.num_key_value_heads * hd, I = c.intermediate_size, V = c.vocab_size;
  add("model.embed_tokens.weight", {V, H}, 1.0f);
  if (!c.tie_word_embeddings) add("lm_head.weight", {V, H}, 0.2f);
  add("model.norm.weight", {H}, 0.2f, 1.0f);
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    if (fused) {
      add(p + "self_attn.qkv_proj.weight", {qo + 2 * kvo, H}, 0.15f);
    } else {
      add(p + "self_attn.q_proj.weight", {qo, H}, 0.15f);
      add(p + "self_attn.k_proj.weight", {kvo, H}, 0.15f);
      add(p + "self_attn.v_proj.weight", {kvo, H}, 0.15f);
      if (c.attention_bias) {
        add(p + "self_attn.q_proj.bias", {qo}, 0.1f);
        add(p + "self_attn.k_proj.bias", {kvo}, 0.1f);
        add(p + "self_attn.v_proj.bias", {kvo}, 0.1f);
      }
    }
    add(p + "self_attn.o_proj.weight", {H, qo}, 0.15f);
    if (c.o_proj_bias) add(p + "self_attn.o_proj.bias", {H}, 0.1f);
    if (fused) {
      add(p + "mlp.gate_up_proj.weight", {2 * I, H}, 0.15f);
    } else {
      add(p + "mlp.gate_proj.weight", {I, H}, 0.15f);
      add(p + "mlp.up_proj.weight", {I, H}, 0.15f);
    }
    add(p + "mlp.down_proj.weight", {H, I}, 0.15f);
    add(p + "input_layernorm.weight", {H}, 0.2f, 1.0f);
    add(p + "post_attention_layernorm.weight", {H}, 0.2f, 1.0f);
  }
  SafetensorsWriter wr;
  wr.set_metadata("format", "pt");
  for (const auto& [name, v] : w.t) {
    if (dtype == TensorDType::F32) {
      wr.add(name, dtype, w.shape[name], v.data(), v.size() * 4);
    } else {
      std::vector<uint16_t> h(v.size());
      for (size_t i = 0; i < v.size(); ++i) h[i] = dtype == TensorDType::BF16 ? f32_to_bf16(v[i]) : f32_to_f16(v[i]);
      wr.add(name, dtype, w.shape[name], h.data(), h.size() * 2);
    }
  }
  wr.write(dir + "/model.safetensors");
  return w;
}

// Naive reference: logits (n x vocab) for the whole sequence, in double, straight from the
// transformers formulas (repeat_kv GQA, rotate_half RoPE with partial rotary, causal (+ window) mask,
// SwiGLU). Rope frequencies come from rope_frequencies(c, seq_len) like transformers' init functions.
inline std::vector<double> reference_logits(const ModelConfig& c, const TinyWeights& w, const std::vector<int32_t>& ids) {
  const int64_t n = ids.size(), H = c.hidden_size, hd = c.head_dim, nh = c.num_attention_heads,
                nkv = c.num_key_value_heads, I = c.intermediate_size, V = c.vocab_size;
  const bool fused = c.architecture == "Phi3ForCausalLM";
  auto W = [&](const std::string& s) -> const std::vector<float>& { return w.t.at(s); };
  auto linear = [&](const std::vector<double>& x, const std::vector<float>& m, int64_t rows, int64_t cols, int64_t row0 = 0) {
    std::vector<double> y(n * rows);
    for (int64_t t = 0; t < n; ++t)
      for (int64_t r = 0; r < rows; ++r) {
        double s = 0;
        for (int64_t k = 0; k < cols; ++k) s += x[t * cols + k] * m[(row0 + r) * cols + k];
        y[t * rows + r] = s;
      }
    return y;
  };
  auto rmsnorm = [&](const std::vector<double>& x, const std::vector<float>& g) {
    std::vector<double> y(x.size());
    for (int64_t t = 0; t < n; ++t) {
      double ss = 0;
      for (int64_t i = 0; i < H; ++i) ss += x[t * H + i] * x[t * H + i];
      double inv = 1.0 / std::sqrt(ss / H + c.rms_norm_eps);
      for (int64_t i = 0; i < H; ++i) y[t * H + i] = g[i] * x[t * H + i] * inv;
    }
    return y;
  };
  std::vector<double> x(n * H);
  for (int64_t t = 0; t < n; ++t)
    for (int64_t i = 0; i < H; ++i) x[t * H + i] = W("model.embed_tokens.weight")[ids[t] * H + i];
  RopeFrequencies fr = rope_frequencies(c, n);
  const int64_t half = c.rotary_dim / 2;
  auto rope = [&](std::vector<double>& v, int64_t heads) {
    for (int64_t t = 0; t < n; ++t)
      for (int64_t h = 0; h < heads; ++h) {
        double* p = &v[(t * heads + h) * hd];
        for (int64_t j = 0; j < half; ++j) {
          double ang = static_cast<double>(fr.inv_freq[j]) * t;
          double cs = std::cos(ang) * fr.attention_scaling, sn = std::sin(ang) * fr.attention_scaling;
          double x1 = p[j], x2 = p[j + half];
          p[j] = x1 * cs - x2 * sn;
          p[j + half] = x2 * cs + x1 * sn;
        }
      }
  };
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    auto h = rmsnorm(x, W(p + "input_layernorm.weight"));
    std::vector<double> q, k, v;
    if (fused) {
      q = linear(h, W(p + "self_attn.qkv_proj.weight"), nh * hd, H, 0);
      k = linear(h, W(p + "self_attn.qkv_proj.weight"), nkv * hd, H, nh * hd);
      v = linear(h, W(p + "self_attn.qkv_proj.weight"), nkv * hd, H, nh * hd + nkv * hd);
    } else {
      q = linear(h, W(p + "self_attn.q_proj.weight"), nh * hd, H);
      k = linear(h, W(p + "self_attn.k_proj.weight"), nkv * hd, H);
      v = linear(h, W(p + "self_attn.v_proj.weight"), nkv * hd, H);
      if (c.attention_bias)
        for (int64_t t = 0; t < n; ++t) {
          for (int64_t i = 0; i < nh * hd; ++i) q[t * nh * hd + i] += W(p + "self_attn.q_proj.bias")[i];
          for (int64_t i = 0; i < nkv * hd; ++i) k[t * nkv * hd + i] += W(p + "self_attn.k_proj.bias")[i];
          for (int64_t i = 0; i < nkv * hd; ++i) v[t * nkv * hd + i] += W(p + "self_attn.v_proj.bias")[i];
        }
    }
    rope(q, nh);
    rope(k, nkv);
    std::vector<double> att(n * nh * hd, 0.0);
    const int64_t win = c.layer_window[l];
    for (int64_t t = 0; t < n; ++t)
      for (int64_t hh = 0; hh < nh; ++hh) {
        const int64_t g = hh / (nh / nkv);
        std::vector<double> s(t + 1, -INFINITY);
        double mx = -INFINITY;
        for (int64_t u = 0; u <= t; ++u) {
          if (win > 0 && u <= t - win) continue;
          double d = 0;
          for (int64_t i = 0; i < hd; ++i) d += q[(t * nh + hh) * hd + i] * k[(u * nkv + g) * hd + i];
          s[u] = d / std::sqrt(static_cast<double>(hd));
          mx = std::max(mx, s[u]);
        }
        double z = 0;
        for (auto& e : s) z += (e = std::exp(e - mx));
        for (int64_t u = 0; u <= t; ++u)
          for (int64_t i = 0; i < hd; ++i) att[(t * nh + hh) * hd + i] += s[u] / z * v[(u * nkv + g) * hd + i];
      }
    auto o = linear(att, W(p + "self_attn.o_proj.weight"), H, nh * hd);
    for (int64_t i = 0; i < n * H; ++i) x[i] += o[i] + (c.o_proj_bias ? W(p + "self_attn.o_proj.bias")[i % H] : 0.0);
    h = rmsnorm(x, W(p + "post_attention_layernorm.weight"));
    std::vector<double> gate, up;
    if (fused) {
      gate = linear(h, W(p + "mlp.gate_up_proj.weight"), I, H, 0);
      up = linear(h, W(p + "mlp.gate_up_proj.weight"), I, H, I);
    } else {
      gate = linear(h, W(p + "mlp.gate_proj.weight"), I, H);
      up = linear(h, W(p + "mlp.up_proj.weight"), I, H);
    }
    for (int64_t i = 0; i < n * I; ++i) gate[i] = up[i] * gate[i] / (1.0 + std::exp(-gate[i]));
    auto d = linear(gate, W(p + "mlp.down_proj.weight"), H, I);
    for (int64_t i = 0; i < n * H; ++i) x[i] += d[i];
  }
  x = rmsnorm(x, W("model.norm.weight"));
  return linear(x, c.tie_word_embeddings ? W("model.embed_tokens.weight") : W("lm_head.weight"), V, H);
}

}  // namespace upg::test
