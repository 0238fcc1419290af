// Token sampling from a logits vector: greedy, temperature, top-k, top-p (nucleus), min-p and a
// repetition penalty, applied in llama.cpp's order (penalty -> top-k -> top-p -> min-p ->
// temperature -> draw). Deterministic for a given seed. On a GPU the penalties are applied where the
// logits are and only the largest few come to the host (Sampler::penalties, candidates, choose).
#pragma once
#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <span>
#include <vector>

#include "kernels/logit_select.h"

namespace upg {

// Defaults are llama.cpp's (temperature 0.8, top-k 40, top-p 0.95, min-p 0.05) with the
// penalty off; resolve_sampling() lays the model's generation_config.json and the user's choices
// over them.
struct SamplingParams {
  float temperature = 0.8f;     // 0 = greedy (argmax)
  int top_k = 40;               // 0 = off
  float top_p = 0.95f;          // 1 = off
  float min_p = 0.05f;          // 0 = off; drop tokens with p < min_p * p_max
  float repeat_penalty = 1.0f;  // 1 = off; HF/CTRL style: logit / penalty if > 0, * penalty if < 0
  int repeat_last_n = 64;       // how many recent tokens the penalty looks at (0 = none, -1 = all)
  // OpenAI's penalties over the generated tokens (not the prompt), as vLLM applies them:
  // logit -= presence_penalty * (count > 0) + frequency_penalty * count. 0 = off; each in [-2, 2].
  float presence_penalty = 0.0f;
  float frequency_penalty = 0.0f;
  uint64_t seed = 0;

  // Throws Error naming the parameter when a value is out of range.
  void validate() const;
};

// What the user chose explicitly (unset: not given).
struct SamplingOverrides {
  std::optional<float> temperature, top_p, min_p, repeat_penalty;
  std::optional<int> top_k, repeat_last_n;
  std::optional<uint64_t> seed;
};

// The sampling settings for a model: SamplingParams' defaults, then the fields the model's
// generation_config.json sets (as transformers reads them: "do_sample": false means greedy;
// "temperature", "top_k", "top_p", "min_p", "repetition_penalty"), then the user's overrides.
// generation_config_json: the file's text, or nullopt when the model has none. Throws Error
// naming the field when the file is not valid JSON or a field has the wrong type.
SamplingParams resolve_sampling(const std::optional<std::string>& generation_config_json,
                                const SamplingOverrides& user);

class Sampler {
 public:
  explicit Sampler(const SamplingParams& p);
  // Picks the next token. `logits` has vocab entries (modified in place by the penalties);
  // `history` is every token so far (prompt and generated); `generated` the generated ones alone
  // (what the presence and frequency penalties count). = the penalties, then choose(logits).
  int32_t sample(std::span<float> logits, std::span<const int32_t> history,
                 std::span<const int32_t> generated = {});

  // The two halves of sample(), for logits that stay on a backend (a GPU: StepEngine::sample_kept),
  // where the penalties are applied and only the largest logits come to the host:
  // The penalties of the next token's logits (row `row` of a step's), one per token they change, appended to out.
  void penalties(int32_t row, int64_t vocab, std::span<const int32_t> history, std::span<const int32_t> generated,
                 std::vector<LogitPenalty>& out) const;
  // How many of a row's largest logits choose(ids, ...) asks for: 1 when greedy, top_k when that is
  // set and at most kMaxTopLogits, else kMaxTopLogits (never more than vocab).
  int candidates(int64_t vocab) const;
  // Whether choose(ids, ...) reads sum_exp (top-k off and more tokens than candidates; not greedy).
  bool needs_row_sum(int64_t vocab) const;
  // The token from a penalised row's largest logits (kernels::top_logits: ids and values, largest
  // first, lowest id first among equals; sum_exp over the whole row), or -1 when they cannot decide
  // (top-p or min-p would look past them, or the kept tokens are more): then choose(the whole row).
  // The same token as choose(row) but for rounding of sum_exp (used only when top_k is off).
  int32_t choose(std::span<const int32_t> ids, std::span<const float> values, int64_t vocab, double sum_exp);
  // The token from a whole penalised row.
  int32_t choose(std::span<const float> logits);

  const SamplingParams& params() const { return p_; }

 private:
  // From the first `count` of the row's largest logits, sorted; keep = the tokens top-k keeps
  // (count >= keep, or keep = vocab and sum_exp given: >= 0).
  int32_t choose_sorted(const int32_t* ids, const float* values, int32_t count, int32_t keep, double sum_exp);

  SamplingParams p_;
  std::mt19937_64 rng_;
  std::vector<int32_t> idx_;
  std::vector<float> val_;
  std::vector<float> prob_;
};

// Index of the largest value (the first one on ties), as torch.argmax.
int32_t argmax(std::span<const float> v);

}  // namespace upg
