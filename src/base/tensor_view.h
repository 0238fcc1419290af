// A tensor read in place: name, element type, shape and bytes. In base because both the file formats
// (format/: safetensors, UPG, PyTorch checkpoints hand tensors out in this form) and the codecs (the
// dense codec reads one in place) use it, and the codecs sit below the formats (docs/ARCHITECTURE.md).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "base/dtype.h"

namespace upg {

// `data` points into the mapping of the file it came from and is valid as long as that file object
// lives. `data` may be unaligned; read it with memcpy or unaligned loads.
struct TensorView {
  std::string name;
  TensorDType dtype = TensorDType::F32;
  std::vector<int64_t> shape;
  const uint8_t* data = nullptr;
  size_t nbytes = 0;

  int64_t numel() const;
  std::string shape_str() const;  // "[3072, 8192]"
};

std::string shape_to_string(const std::vector<int64_t>& shape);

}  // namespace upg
