#include "format/upg_file.h"

#include <algorithm>
#include <filesystem>
#include <limits>
#include <set>

#include "base/error.h"
#include "codecs/codec_registry.h"
#include "codecs/dense/dense_matrix.h"
#include "format/upg_checksum.h"
#include "format/upg_format.h"

namespace upg {

using nlohmann::json;

namespace {

std::optional<DType> codec_dtype(TensorDType t) {
  switch (t) {
    case TensorDType::I8: return DType::I8;
    case TensorDType::U8: return DType::U8;
    case TensorDType::U16: return DType::U16;
    case TensorDType::U32: return DType::U32;
    case TensorDType::F16: return DType::F16;
    case TensorDType::F32: return DType::F32;
    default: return std::nullopt;
  }
}

std::string known_codecs() {
  std::string s = "bf16, f16, f32";
  for (const CodecInfo& c : codec_table()) s += ", " + c.name;
  return s;
}

}  // namespace

int64_t UpgTensor::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d == 0) return 0;
    n *= d;  // no overflow: parse() checked the product
  }
  return n;
}

size_t UpgTensor::stored_bytes() const {
  size_t n = 0;
  for (const UpgArray& a : arrays) n += a.view->nbytes;
  return n;
}

bool UpgTensor::dense() const { return upg_dense_codec_dtype(codec).has_value(); }

int64_t UpgTensor::rows() const {
  if (numel() == 0) return 0;  // (and no product of huge leading dims times a zero)
  if (shape.size() < 2) return 1;
  int64_t r = 1;
  for (size_t i = 0; i + 1 < shape.size(); ++i) r *= shape[i];
  return r;
}

int64_t UpgTensor::cols() const { return shape.empty() ? 1 : shape.back(); }

EncodedArrays UpgTensor::views() const {
  EncodedArrays m;
  for (const UpgArray& a : arrays) {
    auto dt = codec_dtype(a.view->dtype);
    UPG_CHECK(dt.has_value(), file, ": tensor '", name, "': array '", a.view->name, "' has dtype ",
              tensor_dtype_name(a.view->dtype), ", which codec arrays do not use");
    m[a.role] = ArrayView{a.view->data, a.view->nbytes, *dt, a.view->shape};
  }
  return m;
}

std::unique_ptr<WeightMatrix> UpgTensor::open_matrix() const {
  if (auto dt = upg_dense_codec_dtype(codec)) {
    // Validated at parse: one array "data" of dtype *dt and numel() elements.
    return std::make_unique<DenseMatrix>(arrays[0].view->data, *dt, rows(), cols());
  }
  try {
    return make_codec(codec)->open(views(), rows(), cols(), params);
  } catch (const Error& e) {
    const std::string msg = e.what();
    if (msg.rfind(file, 0) == 0) throw;
    throw Error(str_cat(file, ": tensor '", name, "' (codec ", codec, "): ", msg));
  }
}

std::string UpgTensor::compute_xxh64() const {
  UpgHasher h;
  for (const UpgArray& a : arrays) h.update(a.view->data, a.view->nbytes);
  return h.hex();
}

std::string check_upg_format(const std::map<std::string, std::string>& md, const std::string& where) {
  auto f = md.find(kUpgKeyFormat);
  UPG_CHECK(f != md.end(), where, ": not a UPG file: metadata has no 'format' (expected \"", kUpgFormatName,
            "\"; a plain safetensors file?)");
  UPG_CHECK(f->second == kUpgFormatName, where, ": not a UPG file: metadata 'format' is \"", f->second,
            "\", expected \"", kUpgFormatName, "\"");
  auto v = md.find(kUpgKeyVersion);
  UPG_CHECK(v != md.end(), where, ": metadata has no 'format_version'");
  auto ver = parse_upg_version(v->second);
  UPG_CHECK(ver.has_value(), where, ": malformed 'format_version' \"", v->second, "\" (expected MAJOR.MINOR)");
  UPG_CHECK(ver->first == kUpgMajorVersion, where, ": UPG format version ", v->second,
            " is not supported (this build reads ", kUpgMajorVersion, ".x, writes ", kUpgFormatVersion, ")");
  return v->second;
}

std::unique_ptr<UpgFile> UpgFile::open(const std::string& path) {
  return std::make_unique<UpgFile>(SafetensorsFile::open(path));
}

UpgFile::UpgFile(SafetensorsFile file) : st_(std::move(file)) {
  std::error_code ec;
  file_size_ = std::filesystem::file_size(st_.path(), ec);
  parse();
}

std::optional<std::string> UpgFile::text(const std::string& name) const {
  auto it = metadata().find(name);
  if (it == metadata().end()) return std::nullopt;
  return it->second;
}

const UpgTensor* UpgFile::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

void UpgFile::parse() {
  const std::string& p = path();
  version_ = check_upg_format(metadata(), p);
  auto t = metadata().find(kUpgKeyTensors);
  UPG_CHECK(t != metadata().end(), p, ": metadata has no '", kUpgKeyTensors, "' (the table of tensors)");
  json table;
  try {
    table = json::parse(t->second);
  } catch (const json::exception& e) {
    throw Error(str_cat(p, ": metadata '", kUpgKeyTensors, "' is not valid JSON: ", e.what()));
  }
  UPG_CHECK(table.is_object(), p, ": metadata '", kUpgKeyTensors, "' must be a JSON object, found ", table.type_name());

  std::set<std::string> used;
  for (auto it = table.begin(); it != table.end(); ++it) {
    const std::string where = str_cat(p, ": tensor '", it.key(), "'");
    const json& e = it.value();
    UPG_CHECK(e.is_object(), where, ": entry must be an object, found ", e.type_name());
    UpgTensor ut;
    ut.name = it.key();
    ut.file = p;
    UPG_CHECK(!ut.name.empty(), p, ": empty tensor name in '", kUpgKeyTensors, "'");

    UPG_CHECK(e.contains("shape") && e["shape"].is_array(), where, ": missing array field 'shape'");
    uint64_t numel = 1;
    for (const json& d : e["shape"]) {
      UPG_CHECK(d.is_number_integer() && (d.is_number_unsigned() || d.get<int64_t>() >= 0), where, ": shape dimension must be a non-negative integer, found ", d.dump());
      ut.shape.push_back(d.get<int64_t>());
      UPG_CHECK(!__builtin_mul_overflow(numel, d.get<uint64_t>(), &numel) &&
                    numel <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max() / 8),
                where, ": shape ", e["shape"].dump(), " overflows");
    }
    UPG_CHECK(e.contains("dtype") && e["dtype"].is_string(), where, ": missing string field 'dtype'");
    auto dt = parse_tensor_dtype(e["dtype"].get<std::string>());
    UPG_CHECK(dt.has_value(), where, ": unknown dtype '", e["dtype"].get<std::string>(), "' (known: ",
              known_tensor_dtype_names(), ")");
    ut.dtype = *dt;
    UPG_CHECK(e.contains("codec") && e["codec"].is_string(), where, ": missing string field 'codec'");
    ut.codec = e["codec"].get<std::string>();
    const bool dense = upg_dense_codec_dtype(ut.codec).has_value();
    if (!dense) {
      const auto& tab = codec_table();
      bool known = std::any_of(tab.begin(), tab.end(), [&](const CodecInfo& c) { return c.name == ut.codec; });
      UPG_CHECK(known, where, ": unknown codec '", ut.codec, "' (known: ", known_codecs(),
                "); the file needs a newer build of upg");
    }
    if (e.contains("params") && !e["params"].is_null()) {
      UPG_CHECK(e["params"].is_object(), where, ": 'params' must be an object, found ", e["params"].type_name());
      ut.params = e["params"];
    } else {
      ut.params = json::object();
    }
    UPG_CHECK(e.contains("arrays") && e["arrays"].is_object() && !e["arrays"].empty(), where,
              ": missing object field 'arrays' (role -> stored array name)");
    for (auto a = e["arrays"].begin(); a != e["arrays"].end(); ++a) {
      UPG_CHECK(a.value().is_string(), where, ": array role '", a.key(), "' must name a stored array, found ",
                a.value().dump());
      const std::string stored = a.value().get<std::string>();
      const TensorView* v = st_.find(stored);
      UPG_CHECK(v, where, ": array '", a.key(), "' refers to '", stored, "', which is not in the file");
      UPG_CHECK(stored.rfind(kUpgPadPrefix, 0) != 0, where, ": array '", a.key(), "' refers to padding array '",
                stored, "'");
      UPG_CHECK(used.insert(stored).second, where, ": array '", stored, "' is already used by another tensor");
      ut.arrays.push_back(UpgArray{a.key(), v});
    }
    std::sort(ut.arrays.begin(), ut.arrays.end(),
              [](const UpgArray& x, const UpgArray& y) { return x.role < y.role; });
    UPG_CHECK(e.contains("xxh64") && e["xxh64"].is_string() && is_upg_hash_hex(e["xxh64"].get<std::string>()),
              where, ": field 'xxh64' must be 16 lowercase hex digits");
    ut.xxh64 = e["xxh64"].get<std::string>();
    if (e.contains("err") && !e["err"].is_null()) {
      UPG_CHECK(e["err"].is_number(), where, ": field 'err' must be a number, found ", e["err"].dump());
      ut.err = e["err"].get<double>();
    }

    if (dense) {
      const TensorDType want = *upg_dense_codec_dtype(ut.codec);
      UPG_CHECK(ut.arrays.size() == 1 && ut.arrays[0].role == kUpgDenseRole, where, ": codec '", ut.codec,
                "' stores exactly one array '", kUpgDenseRole, "'");
      const TensorView& v = *ut.arrays[0].view;
      UPG_CHECK(v.dtype == want, where, ": array '", v.name, "' has dtype ", tensor_dtype_name(v.dtype),
                ", codec '", ut.codec, "' needs ", tensor_dtype_name(want));
      UPG_CHECK(static_cast<uint64_t>(v.numel()) == numel, where, ": array '", v.name, "' has shape ",
                v.shape_str(), " (", v.numel(), " values), the tensor's shape ", shape_to_string(ut.shape), " needs ",
                numel);
    } else {
      UPG_CHECK(ut.shape.size() == 1 || ut.shape.size() == 2, where, ": codec '", ut.codec,
                "' needs a 1-D or 2-D shape, found ", shape_to_string(ut.shape));
      UPG_CHECK(numel > 0, where, ": empty shape ", shape_to_string(ut.shape));
      for (const UpgArray& a : ut.arrays)
        UPG_CHECK(codec_dtype(a.view->dtype).has_value(), where, ": array '", a.view->name, "' has dtype ",
                  tensor_dtype_name(a.view->dtype), ", which codec arrays do not use (I8, U8, U16, U32, F16, F32)");
    }
    tensors_.push_back(std::move(ut));
  }
  for (const TensorView& v : st_.tensors())
    UPG_CHECK(used.count(v.name) || v.name.rfind(kUpgPadPrefix, 0) == 0, p, ": array '", v.name,
              "' belongs to no tensor of '", kUpgKeyTensors, "'");
  std::stable_sort(tensors_.begin(), tensors_.end(), [](const UpgTensor& a, const UpgTensor& b) {
    auto first = [](const UpgTensor& t) {
      const uint8_t* m = t.arrays[0].view->data;
      for (const UpgArray& a : t.arrays) m = std::min(m, a.view->data);
      return m;
    };
    return first(a) < first(b);
  });
  for (size_t i = 0; i < tensors_.size(); ++i) index_[tensors_[i].name] = i;
}

}  // namespace upg
