#include "base/dtype.h"

namespace upg {

namespace {
struct DTypeInfo {
  TensorDType type;
  const char* name;
  size_t size;
};
constexpr DTypeInfo kDTypes[] = {
    {TensorDType::F64, "F64", 8},         {TensorDType::F32, "F32", 4},         {TensorDType::F16, "F16", 2},
    {TensorDType::BF16, "BF16", 2},       {TensorDType::F8_E4M3, "F8_E4M3", 1}, {TensorDType::F8_E5M2, "F8_E5M2", 1},
    {TensorDType::I64, "I64", 8},         {TensorDType::I32, "I32", 4},         {TensorDType::I16, "I16", 2},
    {TensorDType::I8, "I8", 1},           {TensorDType::U64, "U64", 8},         {TensorDType::U32, "U32", 4},
    {TensorDType::U16, "U16", 2},         {TensorDType::U8, "U8", 1},           {TensorDType::BOOL, "BOOL", 1},
};
}  // namespace

size_t tensor_dtype_size(TensorDType t) { return kDTypes[static_cast<int>(t)].size; }
const char* tensor_dtype_name(TensorDType t) { return kDTypes[static_cast<int>(t)].name; }

std::optional<TensorDType> parse_tensor_dtype(std::string_view name) {
  for (const auto& d : kDTypes)
    if (name == d.name) return d.type;
  return std::nullopt;
}

std::string known_tensor_dtype_names() {
  std::string s;
  for (const auto& d : kDTypes) {
    if (!s.empty()) s += ", ";
    s += d.name;
  }
  return s;
}

}  // namespace upg
