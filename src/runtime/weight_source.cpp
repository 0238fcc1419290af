#include "runtime/weight_source.h"

#include <filesystem>

#include "base/error.h"
#include "format/upg_container.h"
#include "runtime/hf_weight_source.h"
#include "runtime/upg_weight_source.h"

namespace upg {

// The one place that decides which WeightSource reads a path.
std::unique_ptr<WeightSource> open_weight_source(const std::string& path) {
  if (is_upg_path(path)) return std::make_unique<UpgWeightSource>(path);
  std::error_code ec;
  UPG_CHECK(std::filesystem::exists(path, ec), "model path '", path, "' does not exist");
  UPG_CHECK(std::filesystem::is_directory(path, ec), "model path '", path,
            "' is neither a Hugging Face model directory (config.json + *.safetensors) nor a .upg file");
  return std::make_unique<HfWeightSource>(path);
}

}  // namespace upg
