// The table of codecs: one row per codec (name, nominal bits per weight at default params, block
// or group size, a factory). Adding a codec = one folder + one row in codec_registry.cpp.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "codecs/codec.h"

namespace upg {

struct CodecInfo {
  std::string name;
  double nominal_bits;   // stored bits per weight at default params (mdcsr: at keep_fraction 0.1)
  int64_t block;         // group / block size at default params (0: per row)
  std::string summary;
  std::unique_ptr<Codec> (*factory)();
};

const std::vector<CodecInfo>& codec_table();
// Throws Error listing the known names when `name` is not in the table.
const CodecInfo& find_codec(const std::string& name);
std::unique_ptr<Codec> make_codec(const std::string& name);

}  // namespace upg
