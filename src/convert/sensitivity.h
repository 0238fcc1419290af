// How much the model's output moves when one weight tensor is perturbed: the end-to-end measure that
// turns each tensor's local damage (tr(dW H dW^T), convert/gptq.h) into the quantity the allocation
// should minimise, the KL divergence of the output distribution from the original model's.
//
// A layer-local error is not equally harmful everywhere: an error in layer 0's down_proj passes
// through every later layer, one in the lm_head goes straight into the logits, and the residual
// stream dilutes some tensors more than others. The probe runs the uncompressed model over a few
// calibration windows once (keeping its log-probabilities), then, for a tensor t and a perturbed
// copy W', runs the model with only t replaced by W' and returns the mean per-token
// KL(original || perturbed). For small perturbations KL is quadratic in dW, as the local damage is,
// so gain_t = KL / damage_t measured once at the operating point predicts every candidate's KL:
// KL_t(c) ~ gain_t * damage_t(c); and to first order the KLs of different tensors add.
// Cost: one forward pass over the probe tokens per tensor (cheap next to encoding for small models;
// `upg convert --probe-windows 0` turns it off for very large ones).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace upg {

class SensitivityProbe {
 public:
  // model_path: the Hugging Face directory (or UPG file) of the original model; `tokens` holds at
  // least `window` tokens; the first min(windows, tokens / window) windows are used.
  // Throws Error when the model does not load or there is less than one window of tokens.
  SensitivityProbe(std::string model_path, const std::vector<int32_t>& tokens, int64_t window, int64_t windows);

  // Mean KL(original || model with tensor `name` replaced by W), nats per token. W: rows x cols
  // fp32 row-major (the tensor's logical shape). Throws Error naming the tensor when it is not a
  // weight matrix of the model or has another shape.
  double kld_with(const std::string& name, const float* W, int64_t rows, int64_t cols) const;

  int64_t tokens() const { return static_cast<int64_t>(windows_.size()) * window_; }

 private:
  std::string path_;
  int64_t window_ = 0;
  std::vector<std::vector<int32_t>> windows_;
  std::vector<std::vector<float>> base_logp_;  // per window: window x vocab log-probabilities
};

// Mean over rows of KL(p || q) where logp holds log-probabilities and `logits` raw logits of q
// (n x vocab each, row-major); accumulated in double.
double mean_kl_from_logits(const float* logp, const float* logits, int64_t n, int64_t vocab);

}  // namespace upg
