// Element types of tensors stored in safetensors files (the names are the safetensors spelling).
#pragma once
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace upg {

enum class TensorDType : uint8_t { F64, F32, F16, BF16, F8_E4M3, F8_E5M2, I64, I32, I16, I8, U64, U32, U16, U8, BOOL };

// Bytes per element (every supported type is a whole number of bytes).
size_t tensor_dtype_size(TensorDType t);
// "F32", "BF16", ... as written in a safetensors header.
const char* tensor_dtype_name(TensorDType t);
// Parses a safetensors dtype name; nullopt when unknown.
std::optional<TensorDType> parse_tensor_dtype(std::string_view name);
// Comma-separated list of all known names, for error messages.
std::string known_tensor_dtype_names();

}  // namespace upg
