#include "format/upg_writer.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "base/error.h"
#include "base/half.h"
#include "codecs/codec_registry.h"
#include "format/safetensors.h"
#include "format/upg_checksum.h"
#include "format/upg_format.h"
#include "format/upg_stream_writer.h"

namespace upg {

using nlohmann::json;

namespace {

TensorDType to_tensor_dtype(DType t) {
  switch (t) {
    case DType::I8: return TensorDType::I8;
    case DType::U8: return TensorDType::U8;
    case DType::U16: return TensorDType::U16;
    case DType::U32: return TensorDType::U32;
    case DType::F16: return TensorDType::F16;
    case DType::F32: return TensorDType::F32;
  }
  return TensorDType::U8;
}

uint64_t checked_numel(const std::vector<int64_t>& shape, const std::string& what) {
  uint64_t n = 1;
  for (int64_t d : shape) {
    UPG_CHECK(d >= 0, what, ": negative dimension in shape ", shape_to_string(shape));
    UPG_CHECK(!__builtin_mul_overflow(n, static_cast<uint64_t>(d), &n), what, ": shape ", shape_to_string(shape),
              " overflows");
  }
  return n;
}

// Writes `text` to "<path>.tmp-XXXXXX" and renames it onto path.
void write_text_atomically(const std::string& path, const std::string& text) {
  std::string tmp;
  std::FILE* f = create_temp_file(path + ".tmp-", tmp);
  bool ok = std::fwrite(text.data(), 1, text.size(), f) == text.size();
  ok &= std::fflush(f) == 0;
  ok &= ::fsync(fileno(f)) == 0;
  int err = errno;
  ok &= std::fclose(f) == 0;
  if (!ok || std::rename(tmp.c_str(), path.c_str()) != 0) {
    if (ok) err = errno;
    std::remove(tmp.c_str());
    throw Error(str_cat("cannot write '", path, "': ", std::strerror(err)));
  }
}

}  // namespace

struct UpgWriter::Shard {
  std::unique_ptr<SafetensorsStreamWriter> w;
  json tensors = json::object();
  std::vector<std::string> names;
};

UpgWriter::UpgWriter(std::string out_path, UpgWriterOptions options) : out_(std::move(out_path)), opt_(options) {
  UPG_CHECK(!out_.empty(), "UPG writer: empty output path");
  UPG_CHECK(!std::filesystem::is_directory(out_), "UPG writer: output '", out_, "' is a directory (give a .upg file)");
}

UpgWriter::~UpgWriter() { cleanup(); }

void UpgWriter::cleanup() noexcept {
  shards_.clear();  // unfinished stream writers remove their own temporary files
  for (const std::string& t : temp_files_) std::remove(t.c_str());
  temp_files_.clear();
}

void UpgWriter::set_text(const std::string& file_name, std::string text) {
  UPG_CHECK(file_name != kUpgKeyFormat && file_name != kUpgKeyVersion && file_name != kUpgKeyTensors &&
                file_name != kUpgKeyConverter,
            "UPG writer: '", file_name, "' is a reserved metadata key, not a text file name");
  texts_[file_name] = std::move(text);
}

void UpgWriter::set_converter(const nlohmann::json& info) { converter_ = info.dump(); }

void UpgWriter::check_new_name(const std::string& name) const {
  UPG_CHECK(!failed_, "UPG writer '", out_, "': an earlier write failed");
  UPG_CHECK(!finished_, "UPG writer '", out_, "': tensor '", name, "' added after finish()");
  UPG_CHECK(!name.empty() && name.rfind(kUpgPadPrefix, 0) != 0 && name != "__metadata__", "UPG writer: invalid tensor name '",
            name, "'");
  UPG_CHECK(!names_.count(name), "UPG writer: tensor '", name, "' added twice");
}

void UpgWriter::add(const std::string& name, const UpgTensorMeta& meta, const EncodedTensor& enc) {
  check_new_name(name);
  const std::string what = str_cat("UPG writer: tensor '", name, "'");
  UPG_CHECK(!enc.arrays.empty(), what, ": codec '", enc.codec, "' produced no arrays");
  std::vector<ArrayIn> arrays;
  for (const auto& [role, a] : enc.arrays) {
    UPG_CHECK(!role.empty(), what, ": empty array role");
    const uint64_t n = checked_numel(a.shape, str_cat(what, " array '", role, "'"));
    UPG_CHECK(n * dtype_size(a.dtype) == a.bytes.size(), what, ": array '", role, "' shape ", shape_to_string(a.shape),
              " x ", dtype_name(a.dtype), " needs ", n * dtype_size(a.dtype), " bytes, has ", a.bytes.size());
    arrays.push_back(ArrayIn{role, to_tensor_dtype(a.dtype), a.shape, a.bytes.data(), a.bytes.size()});
  }
  if (auto dt = upg_dense_codec_dtype(enc.codec)) {
    // A dense tensor through the codec interface: one array "data" of the codec's dtype.
    UPG_CHECK(arrays.size() == 1 && arrays[0].role == kUpgDenseRole && arrays[0].dtype == *dt, what, ": codec '",
              enc.codec, "' stores one array '", kUpgDenseRole, "' of dtype ", tensor_dtype_name(*dt));
    return add_raw(name, meta, *dt, arrays[0].data, arrays[0].nbytes);
  }
  const CodecInfo& info = [&]() -> const CodecInfo& {
    try {
      return find_codec(enc.codec);
    } catch (const Error& e) {
      throw Error(str_cat(what, ": ", e.what()));
    }
  }();
  UPG_CHECK(meta.shape.size() == 1 || meta.shape.size() == 2, what, ": codec '", enc.codec,
            "' needs a 1-D or 2-D tensor, shape is ", shape_to_string(meta.shape));
  checked_numel(meta.shape, what);
  if (opt_.validate) {
    const int64_t rows = meta.shape.size() == 2 ? meta.shape[0] : 1, cols = meta.shape.back();
    try {
      info.factory()->open(enc.views(), rows, cols, enc.params);
    } catch (const Error& e) {
      throw Error(str_cat(what, ": the encoded arrays do not open: ", e.what()));
    }
  }
  add_arrays(name, meta, enc.codec, enc.params.is_object() ? enc.params : json::object(), arrays);
}

void UpgWriter::add_raw(const std::string& name, const UpgTensorMeta& meta, TensorDType stored, const void* data,
                        size_t nbytes) {
  check_new_name(name);
  const std::string what = str_cat("UPG writer: tensor '", name, "'");
  const std::string codec = upg_dense_codec_name(stored);
  const uint64_t n = checked_numel(meta.shape, what);
  UPG_CHECK(n * tensor_dtype_size(stored) == nbytes, what, ": shape ", shape_to_string(meta.shape), " x ",
            tensor_dtype_name(stored), " needs ", n * tensor_dtype_size(stored), " bytes, given ", nbytes);
  add_arrays(name, meta, codec, json::object(),
             {ArrayIn{kUpgDenseRole, stored, meta.shape, static_cast<const uint8_t*>(data), nbytes}});
}

void UpgWriter::add_f32(const std::string& name, const UpgTensorMeta& meta, const float* values, TensorDType stored) {
  const uint64_t n = checked_numel(meta.shape, str_cat("UPG writer: tensor '", name, "'"));
  if (stored == TensorDType::F32) return add_raw(name, meta, stored, values, n * sizeof(float));
  std::vector<uint16_t> h(n);
  for (uint64_t i = 0; i < n; ++i) {
    if (stored == TensorDType::BF16)
      h[i] = f32_to_bf16(values[i]);
    else if (stored == TensorDType::F16)
      h[i] = f32_to_f16(values[i]);
    else
      throw Error(str_cat("UPG writer: tensor '", name, "': dense tensors are stored as BF16, F16 or F32, not ",
                          tensor_dtype_name(stored)));
  }
  add_raw(name, meta, stored, h.data(), h.size() * 2);
}

UpgWriter::Shard& UpgWriter::shard_for(uint64_t bytes) {
  if (!shards_.empty()) {
    Shard& cur = *shards_.back();
    const bool full = opt_.shard_bytes > 0 && !cur.names.empty() && cur.w->data_bytes() + bytes > opt_.shard_bytes;
    if (!full) return cur;
    temp_files_.push_back(cur.w->finish_to_temp(shard_metadata(cur, false)));
  }
  auto s = std::make_unique<Shard>();
  s->w = std::make_unique<SafetensorsStreamWriter>(
      shards_.empty() && opt_.shard_bytes == 0 ? out_ : str_cat(out_, ".shard", shards_.size() + 1), kUpgAlign,
      kUpgPadPrefix);
  shards_.push_back(std::move(s));
  return *shards_.back();
}

void UpgWriter::add_arrays(const std::string& name, const UpgTensorMeta& meta, const std::string& codec,
                           const nlohmann::json& params, const std::vector<ArrayIn>& arrays) {
  // Role order = sorted role names (the order of the JSON "arrays" object); see upg_checksum.h.
  std::vector<const ArrayIn*> sorted;
  uint64_t bytes = 0;
  for (const ArrayIn& a : arrays) {
    sorted.push_back(&a);
    bytes += a.nbytes + kUpgAlign;
  }
  std::sort(sorted.begin(), sorted.end(), [](const ArrayIn* a, const ArrayIn* b) { return a->role < b->role; });
  for (size_t i = 1; i < sorted.size(); ++i)
    UPG_CHECK(sorted[i]->role != sorted[i - 1]->role, "UPG writer: tensor '", name, "': array role '",
              sorted[i]->role, "' given twice");
  try {
    Shard& s = shard_for(bytes);
    UpgHasher h;
    json roles = json::object();
    for (const ArrayIn* a : sorted) {
      const std::string stored = upg_array_name(name, a->role);
      s.w->add_array(stored, a->dtype, a->shape, a->data, a->nbytes);
      h.update(a->data, a->nbytes);
      roles[a->role] = stored;
    }
    json e = {{"shape", meta.shape}, {"dtype", tensor_dtype_name(meta.dtype)}, {"codec", codec}, {"params", params},
              {"arrays", roles}, {"xxh64", h.hex()}};
    if (meta.err && std::isfinite(*meta.err)) e["err"] = *meta.err;
    s.tensors[name] = std::move(e);
    s.names.push_back(name);
    names_.insert(name);
  } catch (...) {
    failed_ = true;
    throw;
  }
}

std::map<std::string, std::string> UpgWriter::shard_metadata(const Shard& s, bool with_texts) const {
  std::map<std::string, std::string> m;
  if (with_texts) m = texts_;
  m[kUpgKeyFormat] = kUpgFormatName;
  m[kUpgKeyVersion] = kUpgFormatVersion;
  m[kUpgKeyTensors] = s.tensors.dump();
  if (!converter_.empty()) m[kUpgKeyConverter] = converter_;
  return m;
}

std::vector<std::string> UpgWriter::finish() {
  UPG_CHECK(!failed_, "UPG writer '", out_, "': an earlier write failed");
  UPG_CHECK(!finished_, "UPG writer '", out_, "': finish() called twice");
  finished_ = true;
  try {
    if (shards_.empty()) shard_for(0);
    if (shards_.size() == 1) {
      Shard& s = *shards_[0];
      const std::string tmp = s.w->finish_to_temp(shard_metadata(s, true));
      temp_files_.push_back(tmp);
      UPG_CHECK(std::rename(tmp.c_str(), out_.c_str()) == 0, "cannot rename '", tmp, "' to '", out_, "': ",
                std::strerror(errno));
      temp_files_.clear();
      return {out_};
    }
    Shard& last = *shards_.back();
    temp_files_.push_back(last.w->finish_to_temp(shard_metadata(last, false)));
    // Final names: <dir>/<stem>-0000i-of-0000N.upg and <dir>/<stem>.upg.index.json.
    std::filesystem::path out(out_);
    std::string stem = out.filename().string();
    if (stem.size() > 4 && stem.compare(stem.size() - 4, 4, ".upg") == 0) stem.resize(stem.size() - 4);
    const std::filesystem::path dir = out.parent_path();
    const int n = static_cast<int>(shards_.size());
    json weight_map = json::object();
    uint64_t total = 0;
    std::vector<std::string> finals;
    for (int i = 0; i < n; ++i) {
      const std::string fname = upg_shard_name(stem, i + 1, n);
      for (const std::string& t : shards_[i]->names) weight_map[t] = fname;
      finals.push_back((dir / fname).string());
    }
    std::vector<std::string> renamed;
    try {
      for (int i = 0; i < n; ++i) {
        UPG_CHECK(std::rename(temp_files_[i].c_str(), finals[i].c_str()) == 0, "cannot rename '", temp_files_[i],
                  "' to '", finals[i], "': ", std::strerror(errno));
        renamed.push_back(finals[i]);
        total += std::filesystem::file_size(finals[i]);
      }
      json meta = json::object();
      for (const auto& [k, v] : texts_) meta[k] = v;
      meta[kUpgKeyFormat] = kUpgFormatName;
      meta[kUpgKeyVersion] = kUpgFormatVersion;
      if (!converter_.empty()) meta[kUpgKeyConverter] = converter_;
      meta["total_size"] = total;
      const std::string index = (dir / (stem + ".upg.index.json")).string();
      write_text_atomically(index, json{{"metadata", meta}, {"weight_map", weight_map}}.dump(2) + "\n");
      finals.push_back(index);
    } catch (...) {
      for (const std::string& r : renamed) std::remove(r.c_str());
      throw;
    }
    temp_files_.clear();
    return finals;
  } catch (...) {
    failed_ = true;
    cleanup();
    throw;
  }
}

}  // namespace upg
