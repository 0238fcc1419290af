#include "runtime/sampler.h"

#include <algorithm>
#include <cmath>
#include <map>

#include <nlohmann/json.hpp>

#include "base/error.h"

namespace upg {

void SamplingParams::validate() const {
  UPG_CHECK(std::isfinite(temperature) && temperature >= 0, "--temp must be >= 0, got ", temperature);
  UPG_CHECK(top_k >= 0, "--top-k must be >= 0, got ", top_k);
  UPG_CHECK(top_p > 0 && top_p <= 1, "--top-p must be in (0, 1], got ", top_p);
  UPG_CHECK(min_p >= 0 && min_p < 1, "--min-p must be in [0, 1), got ", min_p);
  UPG_CHECK(std::isfinite(repeat_penalty) && repeat_penalty > 0, "--repeat-penalty must be > 0, got ",
            repeat_penalty);
  UPG_CHECK(repeat_last_n >= -1, "--repeat-last-n must be >= -1, got ", repeat_last_n);
  UPG_CHECK(std::isfinite(presence_penalty) && presence_penalty >= -2 && presence_penalty <= 2,
            "presence penalty must be in [-2, 2], got ", presence_penalty);
  UPG_CHECK(std::isfinite(frequency_penalty) && frequency_penalty >= -2 && frequency_penalty <= 2,
            "frequency penalty must be in [-2, 2], got ", frequency_penalty);
}

SamplingParams resolve_sampling(const std::optional<std::string>& generation_config_json,
                                const SamplingOverrides& user) {
  SamplingParams p;
  if (generation_config_json) {
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(*generation_config_json);
    } catch (const nlohmann::json::exception& e) {
      throw Error(str_cat("generation_config.json: not valid JSON: ", e.what()));
    }
    UPG_CHECK(j.is_object(), "generation_config.json: expected a JSON object");
    auto num = [&](const char* key, auto& dst) {
      if (!j.contains(key) || j[key].is_null()) return;
      UPG_CHECK(j[key].is_number(), "generation_config.json: '", key, "' must be a number, found ", j[key].dump());
      dst = j[key].get<std::remove_reference_t<decltype(dst)>>();
    };
    num("temperature", p.temperature);
    num("top_k", p.top_k);
    num("top_p", p.top_p);
    num("min_p", p.min_p);
    num("repetition_penalty", p.repeat_penalty);
    if (j.contains("do_sample") && !j["do_sample"].is_null()) {
      UPG_CHECK(j["do_sample"].is_boolean(), "generation_config.json: 'do_sample' must be true or false, found ",
                j["do_sample"].dump());
      if (!j["do_sample"].get<bool>()) p.temperature = 0.0f;
    }
  }
  if (user.temperature) p.temperature = *user.temperature;
  if (user.top_k) p.top_k = *user.top_k;
  if (user.top_p) p.top_p = *user.top_p;
  if (user.min_p) p.min_p = *user.min_p;
  if (user.repeat_penalty) p.repeat_penalty = *user.repeat_penalty;
  if (user.repeat_last_n) p.repeat_last_n = *user.repeat_last_n;
  if (user.seed) p.seed = *user.seed;
  p.validate();
  return p;
}

Sampler::Sampler(const SamplingParams& p) : p_(p), rng_(p.seed) { p_.validate(); }

int32_t argmax(std::span<const float> v) {
  UPG_CHECK(!v.empty(), "argmax of an empty logits vector");
  return static_cast<int32_t>(std::max_element(v.begin(), v.end()) - v.begin());
}

void Sampler::penalties(int32_t row, int64_t vocab, std::span<const int32_t> history, std::span<const int32_t> generated,
                        std::vector<LogitPenalty>& out) const {
  std::map<int32_t, LogitPenalty> by_token;
  auto at = [&](int32_t t) -> LogitPenalty& {
    auto [it, fresh] = by_token.try_emplace(t, LogitPenalty{row, t, 0.0f, 1.0f});
    return it->second;
  };
  if ((p_.presence_penalty != 0.0f || p_.frequency_penalty != 0.0f) && !generated.empty()) {
    std::map<int32_t, int> count;
    for (int32_t t : generated) ++count[t];
    for (auto [t, c] : count) {
      if (t < 0 || t >= vocab) continue;
      at(t).subtract = p_.presence_penalty + p_.frequency_penalty * static_cast<float>(c);
    }
  }
  if (p_.repeat_penalty != 1.0f && p_.repeat_last_n != 0) {
    const size_t look = p_.repeat_last_n < 0 ? history.size()
                                             : std::min(history.size(), static_cast<size_t>(p_.repeat_last_n));
    for (auto it = history.end() - static_cast<std::ptrdiff_t>(look); it != history.end(); ++it) {
      if (*it < 0 || *it >= vocab) continue;
      at(*it).divide = p_.repeat_penalty;
    }
  }
  for (const auto& [t, p] : by_token) out.push_back(p);
}

int Sampler::candidates(int64_t vocab) const {
  int64_t k = p_.temperature == 0.0f ? 1 : (p_.top_k > 0 && p_.top_k <= kMaxTopLogits) ? p_.top_k : kMaxTopLogits;
  return static_cast<int>(std::max<int64_t>(1, std::min(k, vocab)));
}

bool Sampler::needs_row_sum(int64_t vocab) const {
  const int64_t keep = (p_.top_k > 0 && p_.top_k < vocab) ? p_.top_k : vocab;
  return p_.temperature != 0.0f && keep == vocab && keep > candidates(vocab);
}

int32_t Sampler::sample(std::span<float> logits, std::span<const int32_t> history,
                        std::span<const int32_t> generated) {
  const int32_t n = static_cast<int32_t>(logits.size());
  UPG_CHECK(n > 0, "sampling from an empty logits vector");
  std::vector<LogitPenalty> pen;
  penalties(0, n, history, generated, pen);
  kernels::penalize_logits(logits.data(), n, pen.data(), static_cast<int64_t>(pen.size()));
  return choose(logits);
}

int32_t Sampler::choose(std::span<const float> logits) {
  const int32_t n = static_cast<int32_t>(logits.size());
  UPG_CHECK(n > 0, "sampling from an empty logits vector");
  if (p_.temperature == 0.0f) return argmax(logits);
  // Candidates sorted by logit, descending; top-k keeps the first k.
  const int32_t keep = (p_.top_k > 0 && p_.top_k < n) ? p_.top_k : n;
  kernels::largest_first(logits.data(), n, keep, idx_);
  val_.resize(keep);
  for (int32_t i = 0; i < keep; ++i) val_[i] = logits[idx_[i]];
  return choose_sorted(idx_.data(), val_.data(), keep, keep, -1.0);
}

int32_t Sampler::choose(std::span<const int32_t> ids, std::span<const float> values, int64_t vocab, double sum_exp) {
  UPG_CHECK(!ids.empty() && ids.size() == values.size(), "sampling from ", ids.size(), " candidate ids and ",
            values.size(), " values");
  if (p_.temperature == 0.0f) return ids[0];
  const int64_t keep = (p_.top_k > 0 && p_.top_k < vocab) ? p_.top_k : vocab;
  const int64_t count = static_cast<int64_t>(ids.size());
  // The softmax over the kept tokens: from the candidates when they hold them all, else (top-k off)
  // the row's sum.
  if (keep <= count) return choose_sorted(ids.data(), values.data(), static_cast<int32_t>(keep), static_cast<int32_t>(keep), -1.0);
  if (keep < vocab) return -1;
  return choose_sorted(ids.data(), values.data(), static_cast<int32_t>(count), static_cast<int32_t>(keep), sum_exp);
}

int32_t Sampler::choose_sorted(const int32_t* ids, const float* values, int32_t count, int32_t keep, double sum_exp) {
  // Softmax over the kept tokens (at temperature 1, as llama.cpp filters before temperature).
  const int32_t avail = std::min(count, keep);
  prob_.resize(avail);
  const float mx = values[0];
  double sum = 0;
  for (int32_t i = 0; i < avail; ++i) sum += prob_[i] = std::exp(values[i] - mx);
  if (count < keep) sum = sum_exp;  // the candidates are only the first of the kept tokens
  for (auto& p : prob_) p = static_cast<float>(p / sum);

  if (p_.top_p < 1.0f) {  // smallest prefix whose mass reaches top_p
    double cum = 0;
    int32_t k = 0;
    while (k < keep) {
      if (k == avail) return -1;  // it reaches past the candidates
      cum += prob_[k++];
      if (cum >= p_.top_p) break;
    }
    keep = std::max<int32_t>(k, 1);
  }
  if (p_.min_p > 0.0f) {
    const float floor_p = p_.min_p * prob_[0];
    int32_t k = 1;
    while (k < keep) {
      if (k == avail) return -1;
      if (prob_[k] < floor_p) break;
      ++k;
    }
    keep = k;
  }
  if (keep > avail) return -1;  // every token is kept (no top-k, top-p or min-p): the whole row is needed
  // Temperature, then draw among the survivors.
  double total = 0;
  for (int32_t i = 0; i < keep; ++i) {
    prob_[i] = static_cast<float>(std::exp((values[i] - mx) / p_.temperature));
    total += prob_[i];
  }
  std::uniform_real_distribution<double> u(0.0, total);
  double r = u(rng_), acc = 0;
  for (int32_t i = 0; i < keep; ++i) {
    acc += prob_[i];
    if (r < acc) return ids[i];
  }
  return ids[keep - 1];
}

}  // namespace upg
