// WeightSource over a UPG model (one .upg file or a sharded index; see format/upg_container.h):
// matrices are opened with their codec directly on the memory-mapped arrays (nothing decoded or
// copied at load), small vectors are decoded to fp32, config.json and the tokenizer files come from
// the metadata.
#pragma once
#include <memory>

#include "format/upg_container.h"
#include "runtime/weight_source.h"

namespace upg {

class UpgWeightSource : public WeightSource {
 public:
  // Throws Error naming the path when it is not a valid UPG model or has no config.json.
  explicit UpgWeightSource(const std::string& path);
  std::string path() const override { return c_->path(); }
  const nlohmann::json& config() const override { return config_; }
  bool has(const std::string& name) const override { return c_->find(name) != nullptr; }
  // Throws Error naming the tensor when it is missing, has another shape (expected and found), or
  // its codec rejects the stored arrays.
  std::unique_ptr<WeightMatrix> matrix(const std::string& name, int64_t rows, int64_t cols) const override;
  std::vector<float> vector(const std::string& name, int64_t n) const override;
  std::optional<std::string> file_text(const std::string& name) const override;
  const UpgContainer& container() const { return *c_; }

 private:
  std::unique_ptr<UpgContainer> c_;
  nlohmann::json config_;
};

}  // namespace upg
