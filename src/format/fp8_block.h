// FP8 block-scaled weights, the form DeepSeek publishes V3 and R1 in: config.json's
// quantization_config {"quant_method": "fp8", "fmt": "e4m3", "weight_block_size": [B0, B1]}, each
// quantized weight W (F8_E4M3, rows x cols) stored with W_scale_inv (F32, ceil(rows / B0) x
// ceil(cols / B1)), and the real weight is W[r][c] * scale_inv[r / B0][c / B1]. UPG dequantizes
// such tensors when it reads them (the converter and the HF weight source), one tensor at a time.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "format/hf_checkpoint.h"

namespace upg {

struct Fp8BlockScheme {
  int64_t block_rows = 128, block_cols = 128;
};

// The scheme of a config.json: nullopt without quantization_config; throws Error naming the field
// for any other quantization method or format (GPTQ, AWQ, bitsandbytes checkpoints are not read).
std::optional<Fp8BlockScheme> fp8_block_scheme(const nlohmann::json& config, const std::string& source);

// An E4M3 (fn: no infinities, 0x7f/0xff NaN) byte as a float.
float f8e4m3_to_f32(uint8_t b);

// The fp32 values of checkpoint tensor `name`: F32/F16/BF16 converted; F8_E4M3 multiplied by its
// <name>_scale_inv blocks (which must exist, with the shape the scheme implies). Throws Error naming
// the tensor otherwise.
std::vector<float> checkpoint_tensor_f32(const HfCheckpoint& ck, const std::string& name,
                                         const std::optional<Fp8BlockScheme>& scheme);

}  // namespace upg
