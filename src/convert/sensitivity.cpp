#include "convert/sensitivity.h"

#include <cmath>
#include <span>

#include "base/error.h"
#include "codecs/dense/dense_matrix.h"
#include "runtime/session.h"
#include "runtime/weight_source.h"

namespace upg {

namespace {

// The original weights, with one matrix replaced by an fp32 copy held here.
class OverrideSource : public WeightSource {
 public:
  OverrideSource(std::unique_ptr<WeightSource> base, std::string name, const float* W, int64_t rows, int64_t cols)
      : base_(std::move(base)), name_(std::move(name)), w_(W, W + rows * cols), rows_(rows), cols_(cols) {}
  std::string path() const override { return base_->path(); }
  const nlohmann::json& config() const override { return base_->config(); }
  bool has(const std::string& name) const override { return base_->has(name); }
  std::unique_ptr<WeightMatrix> matrix(const std::string& name, int64_t rows, int64_t cols) const override {
    if (name != name_) return base_->matrix(name, rows, cols);
    UPG_CHECK(rows == rows_ && cols == cols_, "sensitivity: tensor '", name, "' is [", rows, ", ", cols,
              "] in the model but the replacement is [", rows_, ", ", cols_, "]");
    used_ = true;
    return std::make_unique<DenseMatrix>(reinterpret_cast<const uint8_t*>(w_.data()), TensorDType::F32, rows, cols);
  }
  std::vector<float> vector(const std::string& name, int64_t n) const override { return base_->vector(name, n); }
  std::optional<std::string> file_text(const std::string& name) const override { return base_->file_text(name); }
  bool used() const { return used_; }

 private:
  std::unique_ptr<WeightSource> base_;
  std::string name_;
  std::vector<float> w_;
  int64_t rows_, cols_;
  mutable bool used_ = false;
};

void log_softmax_rows(std::vector<float>& v, int64_t n, int64_t vocab) {
  for (int64_t t = 0; t < n; ++t) {
    float* r = v.data() + t * vocab;
    float mx = -INFINITY;
    for (int64_t j = 0; j < vocab; ++j) mx = std::max(mx, r[j]);
    double s = 0;
    for (int64_t j = 0; j < vocab; ++j) s += std::exp(static_cast<double>(r[j] - mx));
    const float lse = mx + static_cast<float>(std::log(s));
    for (int64_t j = 0; j < vocab; ++j) r[j] -= lse;
  }
}

}  // namespace

double mean_kl_from_logits(const float* logp, const float* logits, int64_t n, int64_t vocab) {
  double total = 0;
#pragma omp parallel for reduction(+ : total) schedule(static)
  for (int64_t t = 0; t < n; ++t) {
    const float* p = logp + t * vocab;
    const float* z = logits + t * vocab;
    float mx = -INFINITY;
    for (int64_t j = 0; j < vocab; ++j) mx = std::max(mx, z[j]);
    double s = 0;
    for (int64_t j = 0; j < vocab; ++j) s += std::exp(static_cast<double>(z[j] - mx));
    const double lse = mx + std::log(s);
    double kl = 0;
    for (int64_t j = 0; j < vocab; ++j) {
      const double lp = p[j];
      kl += std::exp(lp) * (lp - (z[j] - lse));
    }
    total += std::max(0.0, kl);
  }
  return n ? total / static_cast<double>(n) : 0.0;
}

SensitivityProbe::SensitivityProbe(std::string model_path, const std::vector<int32_t>& tokens, int64_t window,
                                   int64_t windows)
    : path_(std::move(model_path)), window_(window) {
  UPG_CHECK(window >= 2, "sensitivity: window must be at least 2 tokens, got ", window);
  const int64_t nwin = std::min<int64_t>(windows, static_cast<int64_t>(tokens.size()) / window);
  UPG_CHECK(nwin >= 1, "sensitivity: need at least one window of ", window, " tokens, got ", tokens.size());
  auto model = Model::load(path_);
  const int64_t vocab = model->config().vocab_size;
  Session s(*model, static_cast<int>(window));
  for (int64_t w = 0; w < nwin; ++w) {
    windows_.emplace_back(tokens.begin() + w * window, tokens.begin() + (w + 1) * window);
    std::vector<float> logits;
    s.reset();
    s.forward(windows_.back(), logits, /*all_logits=*/true);
    log_softmax_rows(logits, window, vocab);
    base_logp_.push_back(std::move(logits));
  }
}

double SensitivityProbe::kld_with(const std::string& name, const float* W, int64_t rows, int64_t cols) const {
  auto src = std::make_unique<OverrideSource>(open_weight_source(path_), name, W, rows, cols);
  const OverrideSource* o = src.get();
  auto model = Model::load(std::move(src));
  UPG_CHECK(o->used(), "sensitivity: '", name, "' is not a weight matrix of the model");
  const int64_t vocab = model->config().vocab_size;
  Session s(*model, static_cast<int>(window_));
  double total = 0;
  std::vector<float> logits;
  for (size_t w = 0; w < windows_.size(); ++w) {
    s.reset();
    s.forward(windows_[w], logits, /*all_logits=*/true);
    total += mean_kl_from_logits(base_logp_[w].data(), logits.data(), window_, vocab);
  }
  return total / static_cast<double>(windows_.size());
}

}  // namespace upg
