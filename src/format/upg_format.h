// The UPG container, version 2.0: constants and small rules shared by the writer, the reader and
// the commands. The full specification is docs/FORMAT.md; this header is its executable summary.
//
// A UPG file is a valid safetensors file (see format/safetensors.h) whose arrays all start at a
// multiple of kUpgAlign bytes from the start of the file (the JSON header is padded with spaces, gaps
// between arrays are covered by U8 arrays named "__pad__.<n>", because safetensors readers require
// the data section to be covered contiguously). Its "__metadata__" holds:
//   "format": "upg", "format_version": "2.0",
//   "upg.tensors": JSON {logical name: {shape, dtype, codec, params, arrays: {role: array name},
//                        xxh64, [err]}},
//   "converter": JSON {version, options...} (optional),
//   the model's text files by their Hugging Face names ("config.json", "tokenizer.json", ...).
// A sharded model is "<stem>.upg.index.json" ({"metadata": {...same text keys...}, "weight_map":
// {logical name: shard file}}) beside shards "<stem>-0000i-of-0000N.upg", each a complete UPG file.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "base/dtype.h"

namespace upg {

inline constexpr const char* kUpgFormatName = "upg";
inline constexpr const char* kUpgFormatVersion = "2.0";
inline constexpr int kUpgMajorVersion = 2;
// Every stored array begins at a multiple of this many bytes from the start of the file.
inline constexpr uint64_t kUpgAlign = 64;
// Prefix of the padding arrays that keep the data section contiguous for safetensors readers.
inline constexpr const char* kUpgPadPrefix = "__pad__.";

// Metadata keys.
inline constexpr const char* kUpgKeyFormat = "format";
inline constexpr const char* kUpgKeyVersion = "format_version";
inline constexpr const char* kUpgKeyTensors = "upg.tensors";
inline constexpr const char* kUpgKeyConverter = "converter";

// Text files of a Hugging Face model directory carried in the metadata under their own names.
const std::vector<std::string>& upg_text_file_names();

// The role of the single array of a dense tensor (codecs "bf16", "f16", "f32").
inline constexpr const char* kUpgDenseRole = "data";
// Dense codecs are handled by the container itself (codec name = stored dtype, lower case);
// nullopt when `codec` is not one of them.
std::optional<TensorDType> upg_dense_codec_dtype(const std::string& codec);
// "bf16", "f16" or "f32" for BF16/F16/F32; throws Error for other dtypes.
std::string upg_dense_codec_name(TensorDType t);

// Stored array name of a tensor's role: "<logical>.<role>".
inline std::string upg_array_name(const std::string& logical, const std::string& role) {
  return logical + "." + role;
}

// Parses "MAJOR.MINOR" (both decimal); nullopt when malformed.
std::optional<std::pair<int, int>> parse_upg_version(const std::string& v);

// Shard file name for shard i (1-based) of n: "<stem>-00001-of-00003.upg" (at least 5 digits).
std::string upg_shard_name(const std::string& stem, int i, int n);

}  // namespace upg
