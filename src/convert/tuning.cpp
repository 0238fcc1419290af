#include "convert/tuning.h"

#include <cmath>
#include <cstring>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <vector>

#include "base/error.h"
#include "codecs/codec_registry.h"
#include "codecs/codec_util.h"
#include "format/safetensors.h"
#include "format/upg_container.h"
#include "format/upg_format.h"
#include "format/upg_writer.h"

namespace upg {

namespace {

constexpr const char* kRowScale = ".row_scale";

std::vector<float> read_f32(const TensorView& v, const std::string& file) {
  UPG_CHECK(v.dtype == TensorDType::F32, file, ": tuned tensor '", v.name, "' is ", tensor_dtype_name(v.dtype),
            ", expected F32");
  std::vector<float> out(static_cast<size_t>(v.numel()));
  UPG_CHECK(v.nbytes == out.size() * 4, file, ": tuned tensor '", v.name, "' has ", v.nbytes, " bytes for ",
            out.size(), " values");
  std::memcpy(out.data(), v.data, v.nbytes);
  for (size_t i = 0; i < out.size(); ++i)
    UPG_CHECK(std::isfinite(out[i]), file, ": tuned tensor '", v.name, "' value ", i, " is not finite (", out[i], ")");
  return out;
}

// A tensor's values as fp32 (its matrix's decode).
std::vector<float> decoded_values(const UpgTensor& t) {
  std::vector<float> v(static_cast<size_t>(t.numel()));
  if (!v.empty()) t.open_matrix()->decode_rows(0, t.rows(), v.data());
  return v;
}

}  // namespace

TuningReport apply_tuning(const std::string& model, const std::string& tuned, const std::string& out) {
  auto c = UpgContainer::open(model);
  const SafetensorsFile tf = SafetensorsFile::open(tuned);
  // What the tuned file asks for, checked against the model before anything is written.
  std::map<std::string, std::vector<float>> row_scale, values;
  for (const TensorView& v : tf.tensors()) {
    const bool is_scale = v.name.size() > std::strlen(kRowScale) &&
                          v.name.compare(v.name.size() - std::strlen(kRowScale), std::string::npos, kRowScale) == 0;
    const std::string target = is_scale ? v.name.substr(0, v.name.size() - std::strlen(kRowScale)) : v.name;
    const UpgTensor* t = c->find(target);
    UPG_CHECK(t, tuned, ": tuned tensor '", v.name, "' names no tensor of ", c->path(),
              is_scale ? "" : " (row multipliers are named '<tensor>.row_scale')");
    if (is_scale) {
      UPG_CHECK(t->shape.size() == 2, tuned, ": '", v.name, "': tensor '", target, "' has shape ",
                shape_to_string(t->shape), ", rows can be scaled only in a 2-D matrix");
      UPG_CHECK(v.shape == std::vector<int64_t>{t->shape[0]}, tuned, ": '", v.name, "' has shape ", v.shape_str(),
                ", expected [", t->shape[0], "] (one multiplier per row of '", target, "')");
      row_scale[target] = read_f32(v, tuned);
    } else {
      UPG_CHECK(t->dense(), tuned, ": '", v.name, "' would replace the values of a ", t->codec,
                " tensor; only dense tensors (norms, biases) take new values, matrices take '<tensor>.row_scale'");
      UPG_CHECK(v.shape == t->shape, tuned, ": '", v.name, "' has shape ", v.shape_str(), ", the model's is ",
                shape_to_string(t->shape));
      values[target] = read_f32(v, tuned);
    }
  }

  UpgWriterOptions wo;
  if (c->sharded())
    for (const auto& f : c->files()) wo.shard_bytes = std::max<uint64_t>(wo.shard_bytes, f->file_size());
  UpgWriter w(out, wo);
  for (const std::string& name : upg_text_file_names())
    if (auto text = c->text(name)) w.set_text(name, *text);
  nlohmann::json conv = nlohmann::json::object();
  if (auto it = c->metadata().find(kUpgKeyConverter); it != c->metadata().end()) {
    auto j = nlohmann::json::parse(it->second, nullptr, false);
    if (j.is_object()) conv = j;
  }
  nlohmann::json info = {{"row_scaled", row_scale.size()}, {"replaced", values.size()}};
  if (auto it = tf.metadata().find("upg.tuning"); it != tf.metadata().end()) {
    auto j = nlohmann::json::parse(it->second, nullptr, false);
    UPG_CHECK(j.is_object(), tuned, ": metadata 'upg.tuning' is not a JSON object");
    info.update(j);
  }
  conv["tuning"] = info;
  w.set_converter(conv);

  TuningReport rep;
  for (const UpgTensor* t : c->tensors()) {
    ++rep.tensors;
    const auto rs = row_scale.find(t->name);
    const auto nv = values.find(t->name);
    UpgTensorMeta meta{t->shape, t->dtype, t->err};
    if (t->dense()) {
      const TensorDType stored = *upg_dense_codec_dtype(t->codec);
      if (rs == row_scale.end() && nv == values.end()) {
        const TensorView& a = *t->arrays.at(0).view;
        w.add_raw(t->name, meta, stored, a.data, a.nbytes);
        continue;
      }
      std::vector<float> v = nv != values.end() ? nv->second : decoded_values(*t);
      if (rs != row_scale.end()) {
        const int64_t cols = t->shape[1];
        for (int64_t r = 0; r < t->shape[0]; ++r)
          for (int64_t j = 0; j < cols; ++j) v[static_cast<size_t>(r * cols + j)] *= rs->second[static_cast<size_t>(r)];
        ++rep.rows_scaled;
      }
      if (nv != values.end()) ++rep.replaced;
      meta.err.reset();
      w.add_f32(t->name, meta, v.data(), stored);
      continue;
    }
    const EncodedArrays arrays = t->views();
    EncodedTensor enc;
    if (rs != row_scale.end()) {
      try {
        enc = make_codec(t->codec)->scale_rows(arrays, t->rows(), t->cols(), t->params, rs->second.data());
      } catch (const Error& e) {
        throw Error(str_cat(c->path(), ": tensor '", t->name, "': ", e.what()));
      }
      meta.err.reset();
      ++rep.rows_scaled;
    } else {
      enc.codec = t->codec;
      enc.params = t->params;
      for (const auto& [role, v] : arrays) enc.arrays[role] = copy_array(v);
    }
    w.add(t->name, meta, enc);
  }
  const std::vector<std::string> files = w.finish();
  rep.out = files.empty() ? out : files.back();
  return rep;
}

}  // namespace upg
