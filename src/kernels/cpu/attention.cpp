#include "kernels/cpu/attention.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "base/error.h"
#include "base/half.h"
#include "kernels/cpu/activation.h"
#include "kernels/cpu/vec.h"

namespace upg {

const char* kv_type_name(KvType t) {
  switch (t) {
    case KvType::F32: return "f32";
    case KvType::BF16: return "bf16";
    case KvType::F16: return "f16";
    case KvType::Q8: return "q8";
  }
  return "?";
}

KvType parse_kv_type(const std::string& s) {
  for (KvType t : {KvType::F32, KvType::BF16, KvType::F16, KvType::Q8})
    if (s == kv_type_name(t)) return t;
  throw Error(str_cat("unknown KV cache type '", s, "' (known: f32, bf16, f16, q8)"));
}

size_t kv_row_bytes(KvType t, int64_t head_dim) {
  const size_t hd = static_cast<size_t>(head_dim);
  switch (t) {
    case KvType::F32: return 4 * hd;
    case KvType::BF16: case KvType::F16: return 2 * hd;
    case KvType::Q8: return hd + 4;
  }
  return 0;
}

namespace kernels {

namespace {
// Rows of 16-bit values (bf16, f16): To / From convert one value (template arguments, so the
// conversion inlines into the attention loop).
template <uint16_t (*To)(float)>
void store_16bit(const float* x, int64_t hd, uint8_t* row) {
  for (int64_t i = 0; i < hd; ++i) {
    const uint16_t v = To(x[i]);
    std::memcpy(row + 2 * i, &v, 2);
  }
}
template <float (*From)(uint16_t)>
void load_16bit(const uint8_t* row, int64_t hd, float* out) {
  for (int64_t i = 0; i < hd; ++i) {
    uint16_t v;
    std::memcpy(&v, row + 2 * i, 2);
    out[i] = From(v);
  }
}
}  // namespace

void kv_store_row(KvType t, const float* x, int64_t hd, uint8_t* row) {
  switch (t) {
    case KvType::F32: std::memcpy(row, x, sizeof(float) * hd); return;
    case KvType::BF16: return store_16bit<f32_to_bf16>(x, hd, row);
    case KvType::F16: return store_16bit<f32_to_f16>(x, hd, row);
    case KvType::Q8: {
      float amax = 0.f;
      for (int64_t i = 0; i < hd; ++i) amax = std::max(amax, std::fabs(x[i]));
      const float scale = amax / 127.f, inv = amax > 0.f ? 127.f / amax : 0.f;
      for (int64_t i = 0; i < hd; ++i)
        row[i] = static_cast<uint8_t>(static_cast<int8_t>(std::lrintf(std::clamp(x[i] * inv, -127.f, 127.f))));
      std::memcpy(row + hd, &scale, 4);
      return;
    }
  }
}

void kv_load_row(KvType t, const uint8_t* row, int64_t hd, float* out) {
  switch (t) {
    case KvType::F32: std::memcpy(out, row, sizeof(float) * hd); return;
    case KvType::BF16: return load_16bit<bf16_to_f32>(row, hd, out);
    case KvType::F16: return load_16bit<f16_to_f32>(row, hd, out);
    case KvType::Q8: {
      float scale;
      std::memcpy(&scale, row + hd, 4);
      for (int64_t i = 0; i < hd; ++i) out[i] = static_cast<float>(static_cast<int8_t>(row[i])) * scale;
      return;
    }
  }
}

void attention_head(const AttentionShape& s, const KvLayerView& kv, int64_t g, const float* q, int64_t pos,
                    float* scores, float* tmp, float* out) {
  const int64_t hd = s.head_dim;
  const int64_t lo = s.window > 0 ? std::max<int64_t>(0, pos - s.window + 1) : 0;
  const int64_t cnt = pos - lo + 1;
  const bool f32 = kv.type == KvType::F32;
  for (int64_t p = lo; p <= pos; ++p) {
    const uint8_t* r = kv.row(0, g, p);
    const float* k = reinterpret_cast<const float*>(r);
    if (!f32) {
      kv_load_row(kv.type, r, hd, tmp);
      k = tmp;
    }
    scores[p - lo] = dot(q, k, hd) * s.scale;
  }
  if (s.softcap > 0)
    for (int64_t i = 0; i < cnt; ++i) scores[i] = s.softcap * std::tanh(scores[i] / s.softcap);
  softmax(scores, cnt);
  const int vpart = s.value_dim > 0 ? 0 : 1;
  const int64_t vd = s.value_dim > 0 ? s.value_dim : hd;
  std::memset(out, 0, sizeof(float) * vd);
  for (int64_t p = lo; p <= pos; ++p) {
    const uint8_t* r = kv.row(vpart, g, p);
    const float* v = reinterpret_cast<const float*>(r);
    if (!f32) {
      kv_load_row(kv.type, r, hd, tmp);
      v = tmp;
    }
    axpy(out, scores[p - lo], v, vd);
  }
}

}  // namespace kernels
}  // namespace upg
