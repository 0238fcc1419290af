#include "format/fp8_block.h"

#include <cmath>
#include <limits>

#include "base/error.h"
#include "codecs/dense/dense_matrix.h"

namespace upg {

std::optional<Fp8BlockScheme> fp8_block_scheme(const nlohmann::json& j, const std::string& src) {
  if (!j.is_object() || !j.contains("quantization_config") || j["quantization_config"].is_null()) return std::nullopt;
  const nlohmann::json& q = j["quantization_config"];
  UPG_CHECK(q.is_object(), src, ": quantization_config must be an object");
  const std::string method = q.contains("quant_method") && q["quant_method"].is_string()
                                 ? q["quant_method"].get<std::string>() : std::string("?");
  UPG_CHECK(method == "fp8", src, ": quantization_config.quant_method '", method,
            "' is not supported (UPG reads unquantized checkpoints and DeepSeek's block-scaled fp8)");
  if (q.contains("fmt") && !q["fmt"].is_null())
    UPG_CHECK(q["fmt"].is_string() && q["fmt"].get<std::string>() == "e4m3", src,
              ": quantization_config.fmt must be \"e4m3\", found ", q["fmt"].dump());
  Fp8BlockScheme s;
  if (q.contains("weight_block_size") && !q["weight_block_size"].is_null()) {
    const nlohmann::json& b = q["weight_block_size"];
    UPG_CHECK(b.is_array() && b.size() == 2 && b[0].is_number_integer() && b[1].is_number_integer() &&
                  b[0].get<int64_t>() >= 1 && b[1].get<int64_t>() >= 1 && b[0].get<int64_t>() <= (1 << 20) &&
                  b[1].get<int64_t>() <= (1 << 20),
              src, ": quantization_config.weight_block_size must be two positive integers, found ", b.dump());
    s.block_rows = b[0].get<int64_t>();
    s.block_cols = b[1].get<int64_t>();
  }
  return s;
}

float f8e4m3_to_f32(uint8_t b) {
  const float sign = (b & 0x80) ? -1.0f : 1.0f;
  const int e = (b >> 3) & 0xF, m = b & 7;
  if (e == 0xF && m == 7) return std::numeric_limits<float>::quiet_NaN();
  if (e == 0) return sign * std::ldexp(static_cast<float>(m) / 8.0f, -6);
  return sign * std::ldexp(1.0f + static_cast<float>(m) / 8.0f, e - 7);
}

std::vector<float> checkpoint_tensor_f32(const HfCheckpoint& ck, const std::string& name,
                                         const std::optional<Fp8BlockScheme>& scheme) {
  const TensorView& t = ck.tensor(name);
  if (t.dtype != TensorDType::F8_E4M3) return tensor_to_f32(t);
  UPG_CHECK(scheme, ck.dir(), ": tensor '", name,
            "' is F8_E4M3 but config.json has no fp8 quantization_config saying how it is scaled");
  UPG_CHECK(t.shape.size() == 2, ck.dir(), ": fp8 tensor '", name, "' must be 2-D, found ", t.shape_str());
  const int64_t R = t.shape[0], C = t.shape[1], B0 = scheme->block_rows, B1 = scheme->block_cols;
  const int64_t sr = (R + B0 - 1) / B0, sc = (C + B1 - 1) / B1;
  const std::vector<float> scale = tensor_to_f32(ck.tensor(name + "_scale_inv", {sr, sc}));
  std::vector<float> out(static_cast<size_t>(R * C));
  for (int64_t r = 0; r < R; ++r)
    for (int64_t c = 0; c < C; ++c) {
      const uint8_t b = t.data[r * C + c];
      UPG_CHECK((b & 0x7f) != 0x7f, ck.dir(), ": fp8 tensor '", name, "' holds a NaN at [", r, ", ", c, "]");
      out[r * C + c] = f8e4m3_to_f32(b) * scale[(r / B0) * sc + c / B1];
    }
  return out;
}

}  // namespace upg
