#include "format/safetensors.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>

#include "base/error.h"

namespace upg {

using nlohmann::json;

SafetensorsFile SafetensorsFile::open(const std::string& path) { return SafetensorsFile(MappedFile(path)); }

SafetensorsFile::SafetensorsFile(MappedFile file) : file_(std::move(file)) { parse(); }

const TensorView* SafetensorsFile::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

const TensorView& SafetensorsFile::get(const std::string& name) const {
  const TensorView* t = find(name);
  UPG_CHECK(t, path(), ": tensor '", name, "' not found");
  return *t;
}

namespace {

// Reads a JSON integer that must be >= 0 and fit in int64; `what` names it in errors.
int64_t read_nonneg_int(const json& v, const std::string& where, const char* what) {
  UPG_CHECK(v.is_number_integer(), where, ": ", what, " must be an integer, found ", v.dump());
  if (v.is_number_unsigned()) {
    uint64_t u = v.get<uint64_t>();
    UPG_CHECK(u <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()), where, ": ", what,
              " ", u, " is too large");
    return static_cast<int64_t>(u);
  }
  int64_t i = v.get<int64_t>();
  UPG_CHECK(i >= 0, where, ": ", what, " must not be negative, found ", i);
  return i;
}

}  // namespace

void SafetensorsFile::parse() {
  const std::string& p = file_.path();
  const size_t size = file_.size();
  UPG_CHECK(size >= 8, p, ": truncated safetensors file: ", size,
            " bytes, but the 8-byte header length alone needs 8");
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = header_len << 8 | file_.data()[i];
  UPG_CHECK(header_len <= size - 8, p, ": header length ", header_len,
            " is larger than the file allows (file is ", size, " bytes, so at most ", size - 8,
            "); the file is truncated or not a safetensors file");
  check_input_size(str_cat(p, ": the JSON header"), header_len, kMaxHeaderBytes);
  const char* hbeg = reinterpret_cast<const char*>(file_.data() + 8);
  json header;
  try {
    header = json::parse(hbeg, hbeg + header_len);
  } catch (const json::exception& e) {
    throw Error(str_cat(p, ": malformed JSON header: ", e.what()));
  }
  UPG_CHECK(header.is_object(), p, ": malformed JSON header: expected an object, found ",
            header.type_name());
  const uint8_t* data = file_.data() + 8 + header_len;
  const uint64_t data_size = size - 8 - header_len;

  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const json& v = it.value();
    if (name == "__metadata__") {
      UPG_CHECK(v.is_object(), p, ": __metadata__ must be an object of strings, found ", v.type_name());
      for (auto m = v.begin(); m != v.end(); ++m) {
        UPG_CHECK(m.value().is_string(), p, ": __metadata__ value '", m.key(),
                  "' must be a string, found ", m.value().dump());
        metadata_[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    const std::string where = str_cat(p, ": tensor '", name, "'");
    UPG_CHECK(v.is_object(), where, ": entry must be an object, found ", v.type_name());
    UPG_CHECK(v.contains("dtype") && v["dtype"].is_string(), where, ": missing string field 'dtype'");
    const std::string dt = v["dtype"].get<std::string>();
    auto dtype = parse_tensor_dtype(dt);
    UPG_CHECK(dtype.has_value(), where, ": unknown dtype '", dt, "' (known: ", known_tensor_dtype_names(), ")");
    UPG_CHECK(v.contains("shape") && v["shape"].is_array(), where, ": missing array field 'shape'");
    std::vector<int64_t> shape;
    uint64_t numel = 1;
    bool overflow = false;
    for (const json& d : v["shape"]) {
      int64_t dim = read_nonneg_int(d, where, "shape dimension");
      shape.push_back(dim);
      overflow |= __builtin_mul_overflow(numel, static_cast<uint64_t>(dim), &numel);
    }
    uint64_t need = 0;
    overflow |= __builtin_mul_overflow(numel, static_cast<uint64_t>(tensor_dtype_size(*dtype)), &need);
    UPG_CHECK(!overflow, where, ": shape ", shape_to_string(shape), " x ", dt,
              " overflows the addressable size");
    UPG_CHECK(v.contains("data_offsets") && v["data_offsets"].is_array() && v["data_offsets"].size() == 2,
              where, ": 'data_offsets' must be an array [begin, end]");
    const int64_t b = read_nonneg_int(v["data_offsets"][0], where, "data_offsets begin");
    const int64_t e = read_nonneg_int(v["data_offsets"][1], where, "data_offsets end");
    UPG_CHECK(b <= e, where, ": data_offsets [", b, ", ", e, "] has begin after end");
    UPG_CHECK(static_cast<uint64_t>(e) <= data_size, where, ": data_offsets [", b, ", ", e,
              "] out of range: the data section has only ", data_size, " bytes (file truncated?)");
    UPG_CHECK(static_cast<uint64_t>(e - b) == need, where, ": data_offsets [", b, ", ", e, "] span ",
              e - b, " bytes but shape ", shape_to_string(shape), " x ", dt, " needs ", need, " bytes");
    TensorView t;
    t.name = name;
    t.dtype = *dtype;
    t.shape = std::move(shape);
    t.data = data + b;
    t.nbytes = static_cast<size_t>(need);
    tensors_.push_back(std::move(t));
  }
  std::stable_sort(tensors_.begin(), tensors_.end(),
                   [](const TensorView& a, const TensorView& b) { return a.data < b.data; });
  const TensorView* prev = nullptr;
  for (const TensorView& t : tensors_) {
    if (t.nbytes == 0) continue;
    if (prev) {
      UPG_CHECK(t.data >= prev->data + prev->nbytes, p, ": tensors '", prev->name, "' (bytes ",
                prev->data - data, "..", prev->data - data + prev->nbytes, ") and '", t.name,
                "' (bytes ", t.data - data, "..", t.data - data + t.nbytes, ") overlap");
    }
    prev = &t;
  }
  for (size_t i = 0; i < tensors_.size(); ++i) index_[tensors_[i].name] = i;
}

// ---------------------------------------------------------------------------------------------
// Writer

void SafetensorsWriter::add_entry(Entry e) {
  UPG_CHECK(!e.name.empty() && e.name != "__metadata__", "safetensors writer: invalid tensor name '",
            e.name, "'");
  UPG_CHECK(!names_.count(e.name), "safetensors writer: tensor '", e.name, "' added twice");
  uint64_t numel = 1;
  for (int64_t d : e.shape) {
    UPG_CHECK(d >= 0, "safetensors writer: tensor '", e.name, "' has negative dimension in shape ",
              shape_to_string(e.shape));
    numel *= static_cast<uint64_t>(d);
  }
  UPG_CHECK(numel * tensor_dtype_size(e.dtype) == e.nbytes, "safetensors writer: tensor '", e.name, "' shape ",
            shape_to_string(e.shape), " x ", tensor_dtype_name(e.dtype), " needs ", numel * tensor_dtype_size(e.dtype),
            " bytes, given ", e.nbytes);
  names_[e.name] = entries_.size();
  entries_.push_back(std::move(e));
}

void SafetensorsWriter::add(const std::string& name, TensorDType dtype, std::vector<int64_t> shape,
                            const void* data, size_t nbytes) {
  Entry e{name, dtype, std::move(shape), nullptr, nbytes, {}};
  const uint8_t* p = static_cast<const uint8_t*>(data);
  e.owned.assign(p, p + nbytes);
  add_entry(std::move(e));
}

void SafetensorsWriter::add_ref(const std::string& name, TensorDType dtype, std::vector<int64_t> shape,
                                const void* data, size_t nbytes) {
  add_entry(Entry{name, dtype, std::move(shape), static_cast<const uint8_t*>(data), nbytes, {}});
}

void SafetensorsWriter::write(const std::string& path) const {
  // Order: decreasing element size (natural alignment without gaps), then insertion order.
  std::vector<size_t> order(entries_.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return tensor_dtype_size(entries_[a].dtype) > tensor_dtype_size(entries_[b].dtype);
  });
  json header = json::object();
  if (!metadata_.empty()) {
    json m = json::object();
    for (const auto& [k, v] : metadata_) m[k] = v;
    header["__metadata__"] = m;
  }
  uint64_t off = 0;
  for (size_t i : order) {
    const Entry& e = entries_[i];
    header[e.name] = {{"dtype", tensor_dtype_name(e.dtype)}, {"shape", e.shape}, {"data_offsets", {off, off + e.nbytes}}};
    off += e.nbytes;
  }
  std::string h = header.dump();
  while ((8 + h.size()) % 8 != 0) h.push_back(' ');

  const std::string tmp = str_cat(path, ".tmp-", ::getpid());
  FILE* f = std::fopen(tmp.c_str(), "wb");
  UPG_CHECK(f, "cannot create '", tmp, "': ", std::strerror(errno));
  bool ok = true;
  uint8_t len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(static_cast<uint64_t>(h.size()) >> (8 * i));
  ok &= std::fwrite(len, 1, 8, f) == 8;
  ok &= std::fwrite(h.data(), 1, h.size(), f) == h.size();
  for (size_t i : order) {
    const Entry& e = entries_[i];
    const uint8_t* d = e.owned.empty() ? e.data : e.owned.data();
    if (e.nbytes) ok &= std::fwrite(d, 1, e.nbytes, f) == e.nbytes;
  }
  ok &= std::fflush(f) == 0;
  ok &= ::fsync(fileno(f)) == 0;
  int err = errno;
  ok &= std::fclose(f) == 0;
  if (!ok) {
    std::remove(tmp.c_str());
    throw Error(str_cat("cannot write '", tmp, "': ", std::strerror(err)));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    err = errno;
    std::remove(tmp.c_str());
    throw Error(str_cat("cannot rename '", tmp, "' to '", path, "': ", std::strerror(err)));
  }
}

}  // namespace upg
