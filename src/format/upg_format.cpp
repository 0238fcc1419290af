#include "format/upg_format.h"

#include <cstdio>

#include "base/error.h"

namespace upg {

const std::vector<std::string>& upg_text_file_names() {
  static const std::vector<std::string> names = {"config.json", "tokenizer.json", "tokenizer_config.json",
                                                 "generation_config.json", "chat_template.jinja"};
  return names;
}

std::optional<TensorDType> upg_dense_codec_dtype(const std::string& codec) {
  if (codec == "bf16") return TensorDType::BF16;
  if (codec == "f16") return TensorDType::F16;
  if (codec == "f32") return TensorDType::F32;
  return std::nullopt;
}

std::string upg_dense_codec_name(TensorDType t) {
  switch (t) {
    case TensorDType::BF16: return "bf16";
    case TensorDType::F16: return "f16";
    case TensorDType::F32: return "f32";
    default: break;
  }
  throw Error(str_cat("dense UPG tensors are stored as BF16, F16 or F32, not ", tensor_dtype_name(t)));
}

std::optional<std::pair<int, int>> parse_upg_version(const std::string& v) {
  auto dot = v.find('.');
  if (dot == std::string::npos || dot == 0 || dot + 1 == v.size() || v.size() > 12) return std::nullopt;
  int parts[2] = {0, 0};
  size_t start = 0;
  for (int k = 0; k < 2; ++k) {
    size_t end = k == 0 ? dot : v.size();
    if (end == start) return std::nullopt;
    for (size_t i = start; i < end; ++i) {
      if (v[i] < '0' || v[i] > '9') return std::nullopt;
      parts[k] = parts[k] * 10 + (v[i] - '0');
    }
    start = dot + 1;
  }
  return std::make_pair(parts[0], parts[1]);
}

std::string upg_shard_name(const std::string& stem, int i, int n) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "-%05d-of-%05d.upg", i, n);
  return stem + buf;
}

}  // namespace upg
