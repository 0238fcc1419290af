#include "runtime/model.h"

#include <cmath>

#include "base/error.h"

namespace upg {

std::unique_ptr<Model> Model::load(const std::string& path) { return load(open_weight_source(path)); }

namespace {
void append(std::vector<float>& dst, const std::vector<float>& v) { dst.insert(dst.end(), v.begin(), v.end()); }

// MLA's absorbed form needs kv_b per head as plain matrices: decodes it once into w_uk / w_uv.
void split_mla_kv_b(const ModelConfig& c, std::vector<LayerWeights>& layers) {
  const MlaConfig& a = c.mla;
  const int64_t nh = c.num_attention_heads, nope = a.qk_nope_head_dim, v = a.v_head_dim, r = a.kv_lora_rank;
  std::vector<float> w(static_cast<size_t>(nh * (nope + v) * r));
  for (LayerWeights& L : layers) {
    L.mla.kv_b->decode_rows(0, nh * (nope + v), w.data());
    L.mla.w_uk.resize(static_cast<size_t>(nh * nope * r));
    L.mla.w_uv.resize(static_cast<size_t>(nh * v * r));
    for (int64_t h = 0; h < nh; ++h) {
      const float* head = w.data() + h * (nope + v) * r;
      std::copy(head, head + nope * r, L.mla.w_uk.data() + h * nope * r);
      std::copy(head + nope * r, head + (nope + v) * r, L.mla.w_uv.data() + h * v * r);
    }
  }
}
}  // namespace

std::unique_ptr<Model> Model::load(std::unique_ptr<WeightSource> source) {
  std::unique_ptr<Model> m(new Model());
  const WeightSource& src = *source;
  m->config_ = parse_model_config(src.config(), src.path() + "/config.json");
  const ModelConfig& c = m->config_;
  m->arch_ = &get_arch(c.architecture, src.path());
  m->tensors_ = model_tensors(c, *m->arch_);
  source->prepare(m->tensors_);
  m->layers_.resize(static_cast<size_t>(c.num_hidden_layers));
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) m->layers_[i].window = c.layer_window[static_cast<size_t>(i)];

  const float norm_offset = c.block.norm_weight_offset;
  for (const ModelTensor& t : m->tensors_) {
    auto mat = [&] { return src.matrix(t.name, t.shape[0], t.shape[1]); };
    auto vec = [&] { return src.vector(t.name, t.shape[0]); };
    auto norm = [&] {
      std::vector<float> w = vec();
      if (norm_offset != 0)
        for (float& x : w) x += norm_offset;
      return w;
    };
    if (t.layer < 0) {
      switch (t.part) {
        case Part::Embed: m->embed_ = mat(); break;
        case Part::LmHead: m->lm_head_ = mat(); break;
        case Part::FinalNorm: m->final_norm_ = norm(); break;
        default: throw Error(str_cat(src.path(), ": tensor table error: '", t.name, "' (", part_name(t.part),
                                     ") must be per layer"));
      }
      continue;
    }
    LayerWeights& L = m->layers_[static_cast<size_t>(t.layer)];
    switch (t.part) {
      case Part::AttnNorm: L.input_norm = norm(); break;
      case Part::MlpNorm: L.post_attention_norm = norm(); break;
      case Part::PostAttnNorm: L.attn_out_norm = norm(); break;
      case Part::PostMlpNorm: L.mlp_out_norm = norm(); break;
      case Part::Q: case Part::K: case Part::V: case Part::QKV: L.qkv.push_back(mat()); break;
      case Part::QBias: case Part::KBias: case Part::VBias: case Part::QKVBias: append(L.qkv_bias, vec()); break;
      case Part::O: L.o = mat(); break;
      case Part::OBias: L.o_bias = vec(); break;
      case Part::Gate: case Part::Up: case Part::GateUp: L.mlp.gate_up.push_back(mat()); break;
      case Part::GateBias: case Part::UpBias: case Part::GateUpBias: append(L.mlp.gate_up_bias, vec()); break;
      case Part::Down: L.mlp.down = mat(); break;
      case Part::DownBias: L.mlp.down_bias = vec(); break;
      case Part::Router: L.router = mat(); break;
      case Part::ExpertGate: case Part::ExpertUp: case Part::ExpertDown: {
        if (L.experts.empty()) L.experts.resize(static_cast<size_t>(c.moe.num_experts));
        GatedMlp& e = L.experts.at(static_cast<size_t>(t.expert));
        if (t.part == Part::ExpertDown) e.down = mat();
        else e.gate_up.push_back(mat());
        break;
      }
      case Part::SharedGate: case Part::SharedUp: L.shared_expert.gate_up.push_back(mat()); break;
      case Part::SharedDown: L.shared_expert.down = mat(); break;
      case Part::SharedExpertGate: L.shared_expert_gate = mat(); break;
      case Part::RouterBias: L.router_bias = vec(); break;
      case Part::MlaQ: L.mla.q = mat(); break;
      case Part::MlaQA: L.mla.q_a = mat(); break;
      case Part::MlaQANorm: L.mla.q_a_norm = norm(); break;
      case Part::MlaQB: L.mla.q_b = mat(); break;
      case Part::MlaKvA: L.mla.kv_a = mat(); break;
      case Part::MlaKvANorm: L.mla.kv_a_norm = norm(); break;
      case Part::MlaKvB: L.mla.kv_b = mat(); break;
      default: throw Error(str_cat(src.path(), ": tensor table error: '", t.name, "' (", part_name(t.part),
                                   ") cannot be per layer"));
    }
  }
  // The table must give every part the decoder needs, whatever the architecture.
  UPG_CHECK(m->embed_ && !m->final_norm_.empty(), src.path(), ": tensor table of ", c.architecture,
            " lacks the embedding or the final norm");
  UPG_CHECK(m->lm_head_ || c.tie_word_embeddings, src.path(), ": tensor table of ", c.architecture,
            " lacks lm_head for an untied model");
  const int64_t qkv_out = (c.num_attention_heads + 2 * c.num_key_value_heads) * c.head_dim;
  // A gated MLP of intermediate size `inter` (0: must be absent) is complete.
  auto mlp_ok = [](const GatedMlp& g, int64_t inter) {
    if (inter == 0) return g.empty() && g.gate_up.empty();
    int64_t gu_rows = 0;
    for (const auto& w : g.gate_up) gu_rows += w->rows();
    return gu_rows == 2 * inter && g.down && g.down->cols() == inter &&
           (g.gate_up_bias.empty() || static_cast<int64_t>(g.gate_up_bias.size()) == 2 * inter);
  };
  for (size_t l = 0; l < m->layers_.size(); ++l) {
    const LayerWeights& L = m->layers_[l];
    int64_t qkv_rows = 0;
    for (const auto& w : L.qkv) qkv_rows += w->rows();
    const bool moe = l < c.moe.layers.size() && c.moe.layers[l];
    bool mlp = mlp_ok(L.mlp, moe ? 0 : c.intermediate_size);
    if (moe) {
      mlp = mlp && L.router && static_cast<int64_t>(L.experts.size()) == c.moe.num_experts &&
            mlp_ok(L.shared_expert, c.moe.shared_intermediate_size);
      for (const GatedMlp& e : L.experts) mlp = mlp && mlp_ok(e, c.moe.intermediate_size);
    }
    bool attn = qkv_rows == qkv_out && (L.qkv_bias.empty() || static_cast<int64_t>(L.qkv_bias.size()) == qkv_out);
    if (c.mla.enabled())
      attn = L.qkv.empty() && (L.mla.q || (L.mla.q_a && L.mla.q_b && !L.mla.q_a_norm.empty())) && L.mla.kv_a &&
             L.mla.kv_b && !L.mla.kv_a_norm.empty();
    if (moe && c.moe.router == RouterKind::SigmoidGrouped)
      mlp = mlp && static_cast<int64_t>(L.router_bias.size()) == c.moe.num_experts;
    UPG_CHECK(attn && L.o && mlp && !L.input_norm.empty() && !L.post_attention_norm.empty(),
              src.path(), ": tensor table of ", c.architecture, " does not give layer ", l,
              " every projection and norm the decoder needs");
  }
  if (c.mla.enabled()) split_mla_kv_b(c, m->layers_);
  m->source_ = std::move(source);
  return m;
}

void Model::for_each_matrix(const std::function<void(const WeightMatrix&)>& f) const {
  f(*embed_);
  if (lm_head_) f(*lm_head_);
  auto mlp = [&](const GatedMlp& g) {
    for (const auto& w : g.gate_up) f(*w);
    if (g.down) f(*g.down);
  };
  for (const auto& L : layers_) {
    for (const auto& w : L.qkv) f(*w);
    for (const auto* w : {&L.mla.q, &L.mla.q_a, &L.mla.q_b, &L.mla.kv_a, &L.mla.kv_b})
      if (*w) f(**w);
    f(*L.o);
    mlp(L.mlp);
    if (L.router) f(*L.router);
    for (const GatedMlp& e : L.experts) mlp(e);
    mlp(L.shared_expert);
    if (L.shared_expert_gate) f(*L.shared_expert_gate);
  }
}

namespace {
// Sums f over the matrices decoding one token reads on average (Model::active_weight_bytes).
template <class F>
double active_sum(const Model& m, F f) {
  double total = 0;
  m.for_each_matrix([&](const WeightMatrix& w) { total += f(w); });
  const MoeConfig& moe = m.config().moe;
  for (const LayerWeights& L : m.layers()) {
    if (L.experts.empty()) continue;
    double experts = 0;
    for (const GatedMlp& e : L.experts) {
      for (const auto& w : e.gate_up) experts += f(*w);
      experts += f(*e.down);
    }
    total -= experts * (1.0 - static_cast<double>(moe.experts_per_token) / static_cast<double>(L.experts.size()));
  }
  return total;
}
}  // namespace

double Model::active_weight_bytes() const {
  return active_sum(*this, [](const WeightMatrix& w) { return static_cast<double>(w.stored_bytes()); });
}

int64_t Model::active_matrix_weights() const {
  return static_cast<int64_t>(std::llround(
      active_sum(*this, [](const WeightMatrix& w) { return static_cast<double>(w.rows()) * static_cast<double>(w.cols()); })));
}

size_t Model::weight_bytes() const {
  size_t b = 0;
  for_each_matrix([&](const WeightMatrix& w) { b += w.stored_bytes(); });
  return b;
}

int64_t Model::parameter_count() const {
  int64_t n = 0;
  for (const ModelTensor& t : tensors_) n += t.numel();
  return n;
}

void Model::set_backend(std::shared_ptr<Backend> b) {
  UPG_CHECK(b != nullptr, "Model::set_backend: no backend given");
  backend_ = std::move(b);
}

}  // namespace upg
