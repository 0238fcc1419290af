#include "models/rope.h"

#include <algorithm>
#include <cmath>

#include "base/error.h"

namespace upg {

namespace {

// base ** (2j / dim) in fp32, as torch computes `base ** (arange(0, dim, 2).float() / dim)`.
float pos_freq(double base, int64_t j, int64_t dim) {
  const float e = static_cast<float>(2 * j) / static_cast<float>(dim);
  return static_cast<float>(std::pow(base, static_cast<double>(e)));
}

std::vector<float> default_inv_freq(double base, int64_t dim) {
  std::vector<float> f(static_cast<size_t>(dim / 2));
  for (int64_t j = 0; j < dim / 2; ++j) f[j] = 1.0f / pos_freq(base, j, dim);
  return f;
}

}  // namespace

bool rope_depends_on_length(const RopeConfig& r) { return r.type == "longrope" || r.type == "dynamic"; }

int64_t DynamicRopeState::update(const ModelConfig& c, int64_t seq_len) {
  const int64_t orig = c.max_position_embeddings;
  if (cached_len == 0) cached_len = orig;
  if (seq_len > cached_len) cached_len = seq_len;
  if (seq_len < orig && cached_len > orig) cached_len = orig;
  return cached_len;
}

RopeFrequencies rope_frequencies(const ModelConfig& c, int64_t seq_len) {
  const RopeConfig& r = c.rope;
  const int64_t dim = c.rotary_dim;
  const int64_t half = dim / 2;
  RopeFrequencies out;
  if (r.type == "default") {
    out.inv_freq = default_inv_freq(r.theta, dim);
  } else if (r.type == "linear") {
    out.inv_freq = default_inv_freq(r.theta, dim);
    for (float& f : out.inv_freq) f = f / static_cast<float>(*r.factor);
  } else if (r.type == "dynamic") {
    const double factor = *r.factor;
    const double max_pos = static_cast<double>(c.max_position_embeddings);
    const double len = static_cast<double>(std::max<int64_t>(seq_len, c.max_position_embeddings));
    const double base = r.theta * std::pow(factor * len / max_pos - (factor - 1),
                                           static_cast<double>(dim) / static_cast<double>(dim - 2));
    out.inv_freq = default_inv_freq(base, dim);
  } else if (r.type == "yarn") {
    const double orig = static_cast<double>(r.original_max_position_embeddings);
    const double factor = r.factor ? *r.factor : static_cast<double>(c.max_position_embeddings) / orig;
    auto get_mscale = [](double scale, double m) { return scale <= 1 ? 1.0 : 0.1 * m * std::log(scale) + 1.0; };
    double attn;
    if (r.attention_factor) attn = *r.attention_factor;
    else if (r.mscale && r.mscale_all_dim && *r.mscale != 0 && *r.mscale_all_dim != 0)
      attn = get_mscale(factor, *r.mscale) / get_mscale(factor, *r.mscale_all_dim);
    else attn = get_mscale(factor, 1.0);
    const double beta_fast = r.beta_fast && *r.beta_fast != 0 ? *r.beta_fast : 32.0;
    const double beta_slow = r.beta_slow && *r.beta_slow != 0 ? *r.beta_slow : 1.0;
    auto corr_dim = [&](double rot) {
      return (static_cast<double>(dim) * std::log(orig / (rot * 2 * M_PI))) / (2 * std::log(r.theta));
    };
    double low = corr_dim(beta_fast), high = corr_dim(beta_slow);
    if (r.truncate) {
      low = std::floor(low);
      high = std::ceil(high);
    }
    low = std::max(low, 0.0);
    high = std::min(high, static_cast<double>(dim - 1));
    if (low == high) high += 0.001;
    out.inv_freq.resize(half);
    for (int64_t j = 0; j < half; ++j) {
      const float pf = pos_freq(r.theta, j, dim);
      const float extra = 1.0f / pf;
      const float inter = 1.0f / (static_cast<float>(factor) * pf);
      float ramp = (static_cast<float>(j) - static_cast<float>(low)) / static_cast<float>(high - low);
      ramp = std::clamp(ramp, 0.0f, 1.0f);
      const float ef = 1.0f - ramp;
      out.inv_freq[j] = inter * (1.0f - ef) + extra * ef;
    }
    out.attention_scaling = static_cast<float>(attn);
  } else if (r.type == "longrope") {
    const int64_t orig = r.original_max_position_embeddings;
    const double factor = r.factor ? *r.factor
                                   : static_cast<double>(c.max_position_embeddings) / static_cast<double>(orig);
    double attn;
    if (r.attention_factor) attn = *r.attention_factor;
    else attn = factor <= 1.0 ? 1.0 : std::sqrt(1 + std::log(factor) / std::log(static_cast<double>(orig)));
    const std::vector<double>& ext = seq_len > orig ? r.long_factor : r.short_factor;
    UPG_CHECK(static_cast<int64_t>(ext.size()) == half, "longrope factors have ", ext.size(), " values, expected ", half);
    out.inv_freq.resize(half);
    for (int64_t j = 0; j < half; ++j) out.inv_freq[j] = 1.0f / (static_cast<float>(ext[j]) * pos_freq(r.theta, j, dim));
    out.attention_scaling = static_cast<float>(attn);
  } else if (r.type == "llama3") {
    const float factor = static_cast<float>(*r.factor);
    const float low_f = static_cast<float>(r.low_freq_factor), high_f = static_cast<float>(r.high_freq_factor);
    const float old_ctx = static_cast<float>(r.original_max_position_embeddings);
    const float low_wavelen = old_ctx / low_f, high_wavelen = old_ctx / high_f;
    out.inv_freq = default_inv_freq(r.theta, dim);
    for (float& f : out.inv_freq) {
      const float wavelen = static_cast<float>(2 * M_PI) / f;
      float v = wavelen > low_wavelen ? f / factor : f;
      if (!(wavelen < high_wavelen) && !(wavelen > low_wavelen)) {
        const float smooth = (old_ctx / wavelen - low_f) / (high_f - low_f);
        v = (1 - smooth) * v / factor + smooth * v;
      }
      f = v;
    }
  } else {
    throw Error(str_cat("unsupported rope type '", r.type, "'"));
  }
  return out;
}

}  // namespace upg
