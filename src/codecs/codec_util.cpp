#include "codecs/codec_util.h"

#include <algorithm>

namespace upg {

const char* dtype_name(DType t) {
  switch (t) {
    case DType::I8: return "I8";
    case DType::U8: return "U8";
    case DType::U16: return "U16";
    case DType::U32: return "U32";
    case DType::F16: return "F16";
    case DType::F32: return "F32";
  }
  return "?";
}

size_t dtype_size(DType t) {
  switch (t) {
    case DType::I8:
    case DType::U8: return 1;
    case DType::U16:
    case DType::F16: return 2;
    case DType::U32:
    case DType::F32: return 4;
  }
  return 1;
}

DType dtype_from_name(const std::string& s) {
  for (DType t : {DType::I8, DType::U8, DType::U16, DType::U32, DType::F16, DType::F32})
    if (s == dtype_name(t)) return t;
  throw Error(str_cat("codec arrays: unsupported dtype '", s, "' (expected I8, U8, U16, U32, F16 or F32)"));
}

size_t EncodedTensor::total_bytes() const {
  size_t n = 0;
  for (const auto& [name, a] : arrays) n += a.bytes.size();
  return n;
}

double EncodedTensor::bits_per_weight(int64_t rows, int64_t cols) const {
  return 8.0 * static_cast<double>(total_bytes()) / static_cast<double>(rows * cols);
}

EncodedArrays EncodedTensor::views() const {
  EncodedArrays v;
  for (const auto& [name, a] : arrays) v[name] = ArrayView{a.bytes.data(), a.bytes.size(), a.dtype, a.shape};
  return v;
}

int64_t shape_numel(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

Array make_array(DType t, std::vector<int64_t> shape) {
  Array a;
  a.dtype = t;
  a.bytes.assign(static_cast<size_t>(shape_numel(shape)) * dtype_size(t), 0);
  a.shape = std::move(shape);
  return a;
}

Array copy_array(const ArrayView& v) {
  Array a;
  a.dtype = v.dtype;
  a.shape = v.shape;
  a.bytes.assign(v.data, v.data + v.nbytes);
  return a;
}

Array slice_array_2d(const ArrayView& a, int64_t r0, int64_t r1, int64_t e0, int64_t e1) {
  UPG_CHECK(a.shape.size() == 2 && 0 <= r0 && r0 <= r1 && r1 <= a.shape[0] && 0 <= e0 && e0 <= e1 &&
                e1 <= a.shape[1],
            "slice of a ", shape_str(a.shape), " array: rows [", r0, ", ", r1, ") x [", e0, ", ", e1, ") is outside it");
  Array out = make_array(a.dtype, {r1 - r0, e1 - e0});
  const size_t es = dtype_size(a.dtype), width = static_cast<size_t>(a.shape[1]) * es, n = static_cast<size_t>(e1 - e0) * es;
  for (int64_t r = r0; r < r1; ++r)
    std::memcpy(out.bytes.data() + static_cast<size_t>(r - r0) * n, a.data + static_cast<size_t>(r) * width + e0 * es, n);
  return out;
}

static const ArrayView& find_array(const EncodedArrays& arrays, const std::string& codec,
                                   const std::string& name, DType dtype) {
  auto it = arrays.find(name);
  UPG_CHECK(it != arrays.end(), codec, ": array '", name, "' is missing");
  const ArrayView& a = it->second;
  UPG_CHECK(a.dtype == dtype, codec, ": array '", name, "' has dtype ", dtype_name(a.dtype),
            ", expected ", dtype_name(dtype));
  for (int64_t d : a.shape) UPG_CHECK(d >= 0, codec, ": array '", name, "' has a negative dimension");
  UPG_CHECK(a.nbytes == static_cast<size_t>(shape_numel(a.shape)) * dtype_size(dtype), codec,
            ": array '", name, "' has ", a.nbytes, " bytes but its shape ", shape_str(a.shape),
            " needs ", shape_numel(a.shape) * static_cast<int64_t>(dtype_size(dtype)));
  UPG_CHECK(a.data != nullptr || a.nbytes == 0, codec, ": array '", name, "' has no data");
  return a;
}

const ArrayView& require_array(const EncodedArrays& arrays, const std::string& codec,
                               const std::string& name, DType dtype,
                               const std::vector<int64_t>& shape) {
  const ArrayView& a = find_array(arrays, codec, name, dtype);
  UPG_CHECK(a.shape == shape, codec, ": array '", name, "' has shape ", shape_str(a.shape),
            ", expected ", shape_str(shape));
  return a;
}

const ArrayView& require_vector(const EncodedArrays& arrays, const std::string& codec,
                                const std::string& name, DType dtype) {
  const ArrayView& a = find_array(arrays, codec, name, dtype);
  UPG_CHECK(a.shape.size() == 1, codec, ": array '", name, "' has shape ", shape_str(a.shape),
            ", expected rank 1");
  return a;
}

int64_t param_int(const CodecParams& p, const std::string& codec, const std::string& key,
                  int64_t def, int64_t lo, int64_t hi) {
  if (!p.is_object() || !p.contains(key)) return def;
  const auto& v = p.at(key);
  UPG_CHECK(v.is_number_integer(), codec, ": param '", key, "' must be an integer, found ", v.dump());
  int64_t x = v.get<int64_t>();
  UPG_CHECK(x >= lo && x <= hi, codec, ": param '", key, "' = ", x, " is outside [", lo, ", ", hi, "]");
  return x;
}

double param_num(const CodecParams& p, const std::string& codec, const std::string& key,
                 double def, double lo, double hi) {
  if (!p.is_object() || !p.contains(key)) return def;
  const auto& v = p.at(key);
  UPG_CHECK(v.is_number(), codec, ": param '", key, "' must be a number, found ", v.dump());
  double x = v.get<double>();
  UPG_CHECK(x >= lo && x <= hi, codec, ": param '", key, "' = ", x, " is outside [", lo, ", ", hi, "]");
  return x;
}

std::string param_str(const CodecParams& p, const std::string& codec, const std::string& key,
                      const std::string& def, const std::vector<std::string>& allowed) {
  if (!p.is_object() || !p.contains(key)) return def;
  const auto& v = p.at(key);
  UPG_CHECK(v.is_string(), codec, ": param '", key, "' must be a string, found ", v.dump());
  std::string s = v.get<std::string>();
  if (std::find(allowed.begin(), allowed.end(), s) == allowed.end()) {
    std::string list;
    for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
    throw Error(str_cat(codec, ": param '", key, "' = '", s, "' is not one of: ", list));
  }
  return s;
}

void check_dims(const std::string& codec, int64_t rows, int64_t cols) {
  UPG_CHECK(rows >= 1 && cols >= 1, codec, ": matrix shape ", rows, " x ", cols, " must be at least 1 x 1");
}

}  // namespace upg
