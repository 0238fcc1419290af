#include "runtime/model.h"

#include "base/error.h"

namespace upg {

std::unique_ptr<Model> Model::load(const std::string& path) { return load(open_weight_source(path)); }

namespace {
void append(std::vector<float>& dst, const std::vector<float>& v) { dst.insert(dst.end(), v.begin(), v.end()); }
}  // namespace

std::unique_ptr<Model> Model::load(std::unique_ptr<WeightSource> source) {
  std::unique_ptr<Model> m(new Model());
  const WeightSource& src = *source;
  m->config_ = parse_model_config(src.config(), src.path() + "/config.json");
  const ModelConfig& c = m->config_;
  m->arch_ = &get_arch(c.architecture, src.path());
  m->tensors_ = model_tensors(c, *m->arch_);
  m->layers_.resize(static_cast<size_t>(c.num_hidden_layers));
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) m->layers_[i].window = c.layer_window[static_cast<size_t>(i)];

  for (const ModelTensor& t : m->tensors_) {
    auto mat = [&] { return src.matrix(t.name, t.shape[0], t.shape[1]); };
    auto vec = [&] { return src.vector(t.name, t.shape[0]); };
    if (t.layer < 0) {
      switch (t.part) {
        case Part::Embed: m->embed_ = mat(); break;
        case Part::LmHead: m->lm_head_ = mat(); break;
        case Part::FinalNorm: m->final_norm_ = vec(); break;
        default: throw Error(str_cat(src.path(), ": tensor table error: '", t.name, "' (", part_name(t.part),
                                     ") must be per layer"));
      }
      continue;
    }
    LayerWeights& L = m->layers_[static_cast<size_t>(t.layer)];
    switch (t.part) {
      case Part::AttnNorm: L.input_norm = vec(); break;
      case Part::MlpNorm: L.post_attention_norm = vec(); break;
      case Part::Q: case Part::K: case Part::V: case Part::QKV: L.qkv.push_back(mat()); break;
      case Part::QBias: case Part::KBias: case Part::VBias: case Part::QKVBias: append(L.qkv_bias, vec()); break;
      case Part::O: L.o = mat(); break;
      case Part::OBias: L.o_bias = vec(); break;
      case Part::Gate: case Part::Up: case Part::GateUp: L.gate_up.push_back(mat()); break;
      case Part::GateBias: case Part::UpBias: case Part::GateUpBias: append(L.gate_up_bias, vec()); break;
      case Part::Down: L.down = mat(); break;
      case Part::DownBias: L.down_bias = vec(); break;
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
  for (size_t l = 0; l < m->layers_.size(); ++l) {
    const LayerWeights& L = m->layers_[l];
    int64_t qkv_rows = 0, gu_rows = 0;
    for (const auto& w : L.qkv) qkv_rows += w->rows();
    for (const auto& w : L.gate_up) gu_rows += w->rows();
    UPG_CHECK(qkv_rows == qkv_out && L.o && gu_rows == 2 * c.intermediate_size && L.down &&
                  !L.input_norm.empty() && !L.post_attention_norm.empty() &&
                  (L.qkv_bias.empty() || static_cast<int64_t>(L.qkv_bias.size()) == qkv_out) &&
                  (L.gate_up_bias.empty() || static_cast<int64_t>(L.gate_up_bias.size()) == 2 * c.intermediate_size),
              src.path(), ": tensor table of ", c.architecture, " does not give layer ", l,
              " every projection and norm the decoder needs");
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

int64_t Model::parameter_count() const {
  int64_t n = 0;
  for (const ModelTensor& t : tensors_) n += t.numel();
  return n;
}

}  // namespace upg
