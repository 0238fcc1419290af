#include "runtime/upg_weight_source.h"

#include "base/error.h"
#include "format/upg_format.h"

namespace upg {

UpgWeightSource::UpgWeightSource(const std::string& path) : c_(UpgContainer::open(path)) {
  auto cfg = c_->text("config.json");
  UPG_CHECK(cfg.has_value(), path, ": the UPG metadata has no 'config.json'");
  try {
    config_ = nlohmann::json::parse(*cfg);
  } catch (const nlohmann::json::exception& e) {
    throw Error(str_cat(path, ": metadata 'config.json' is not valid JSON: ", e.what()));
  }
  UPG_CHECK(config_.is_object(), path, ": metadata 'config.json' must be a JSON object");
}

std::unique_ptr<WeightMatrix> UpgWeightSource::matrix(const std::string& name, int64_t rows, int64_t cols) const {
  const UpgTensor& t = c_->tensor(name);
  UPG_CHECK(t.shape == (std::vector<int64_t>{rows, cols}), t.file, ": tensor '", name, "' has shape ",
            shape_to_string(t.shape), ", expected ", shape_to_string({rows, cols}));
  return t.open_matrix();
}

std::vector<float> UpgWeightSource::vector(const std::string& name, int64_t n) const {
  const UpgTensor& t = c_->tensor(name);
  UPG_CHECK(t.shape == (std::vector<int64_t>{n}), t.file, ": tensor '", name, "' has shape ",
            shape_to_string(t.shape), ", expected ", shape_to_string({n}));
  std::vector<float> v(static_cast<size_t>(n));
  if (n > 0) t.open_matrix()->decode_rows(0, 1, v.data());
  return v;
}

std::optional<std::string> UpgWeightSource::file_text(const std::string& name) const {
  for (const std::string& f : upg_text_file_names())
    if (f == name) return c_->text(name);
  return std::nullopt;
}

}  // namespace upg
