// A simple Hugging Face -> UPG conversion: one codec for every 2-D tensor, one storage for the rest
// (norm weights, biases), no calibration and no bit allocation (that is `upg convert`, built on
// UpgWriter). Used by tests and as the reference for how a converter drives the writer: tensors
// are read, encoded and written one at a time, so memory stays at about one tensor in fp32.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "codecs/codec.h"
#include "format/hf_checkpoint.h"

namespace upg {

struct UpgFromHfOptions {
  // 2-D tensors: "keep" (the checkpoint's own BF16/F16/F32 bytes), "bf16", "f16", "f32", or a codec of
  // codec_table() ("int8", ...) with matrix_params.
  std::string matrix_codec = "keep";
  CodecParams matrix_params = CodecParams::object();
  // Other tensors: "keep", "bf16", "f16" or "f32".
  std::string vector_codec = "keep";
  // Record each tensor's relative Frobenius error ||W - decode(encode(W))|| / ||W|| as "err".
  bool measure_err = true;
  uint64_t shard_bytes = 0;  // see UpgWriterOptions
  // Called after each tensor: (tensors done, total, name).
  std::function<void(size_t, size_t, const std::string&)> progress;
};

// Converts every tensor of `ck` and its text files (config.json, tokenizer files) into `out_path`.
// Returns the files written. Throws Error naming the tensor on any failure (nothing is left behind).
std::vector<std::string> convert_hf_to_upg(const HfCheckpoint& ck, const std::string& out_path,
                                           const UpgFromHfOptions& options = {});

// ||a - b||_F / ||b||_F over n values, accumulated in double (0 when both are zero, inf when only b is).
double relative_frobenius_error(const float* a, const float* b, size_t n);

}  // namespace upg
