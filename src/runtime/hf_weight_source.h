// WeightSource over a Hugging Face model directory: dense bf16/f16/f32 matrices read in place
// from the memory-mapped safetensors files.
#pragma once
#include <memory>

#include "format/hf_checkpoint.h"
#include "models/fused_layout.h"
#include "runtime/weight_source.h"

namespace upg {

class HfWeightSource : public WeightSource {
 public:
  explicit HfWeightSource(const std::string& dir) : ck_(HfCheckpoint::open(dir)) {}
  std::string path() const override { return ck_->dir(); }
  const nlohmann::json& config() const override { return ck_->config(); }
  bool has(const std::string& name) const override { return ck_->has(name); }
  std::unique_ptr<WeightMatrix> matrix(const std::string& name, int64_t rows, int64_t cols) const override;
  std::vector<float> vector(const std::string& name, int64_t n) const override;
  std::optional<std::string> file_text(const std::string& name) const override;
  void prepare(const std::vector<ModelTensor>& tensors) override { register_fused_layout(*ck_, tensors); }
  const HfCheckpoint& checkpoint() const { return *ck_; }

 private:
  std::unique_ptr<HfCheckpoint> ck_;
};

}  // namespace upg
