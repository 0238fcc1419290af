#include "format/upg_stream_writer.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <nlohmann/json.hpp>

#include "base/error.h"
#include "format/safetensors.h"

namespace upg {

std::FILE* create_temp_file(const std::string& prefix, std::string& name_out) {
  std::string tmpl = prefix + "XXXXXX";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  int fd = ::mkstemp(buf.data());
  UPG_CHECK(fd >= 0, "cannot create temporary file '", tmpl, "': ", std::strerror(errno));
  name_out = buf.data();
  // mkstemp makes the file 0600; give the finished file the usual permissions (0666 & ~umask).
  const mode_t mask = ::umask(0);
  ::umask(mask);
  ::fchmod(fd, 0666 & ~mask);
  std::FILE* f = ::fdopen(fd, "w+b");
  if (!f) {
    int err = errno;
    ::close(fd);
    std::remove(name_out.c_str());
    throw Error(str_cat("cannot open temporary file '", name_out, "': ", std::strerror(err)));
  }
  return f;
}

SafetensorsStreamWriter::SafetensorsStreamWriter(std::string path, uint64_t align, std::string pad_prefix)
    : path_(std::move(path)), align_(align ? align : 1), pad_prefix_(std::move(pad_prefix)) {
  data_ = create_temp_file(path_ + ".data.tmp-", data_tmp_);
}

SafetensorsStreamWriter::~SafetensorsStreamWriter() { cleanup(); }

void SafetensorsStreamWriter::cleanup() noexcept {
  if (data_) {
    std::fclose(data_);
    data_ = nullptr;
  }
  if (!data_tmp_.empty()) {
    std::remove(data_tmp_.c_str());
    data_tmp_.clear();
  }
}

void SafetensorsStreamWriter::pad_to_alignment() {
  const uint64_t gap = (align_ - offset_ % align_) % align_;
  if (gap == 0) return;
  static const uint8_t zeros[4096] = {};
  for (uint64_t left = gap; left;) {
    size_t n = static_cast<size_t>(std::min<uint64_t>(left, sizeof zeros));
    UPG_CHECK(std::fwrite(zeros, 1, n, data_) == n, "cannot write '", data_tmp_, "': ", std::strerror(errno));
    left -= n;
  }
  entries_.push_back(Entry{str_cat(pad_prefix_, pads_++), TensorDType::U8, {static_cast<int64_t>(gap)}, offset_,
                           offset_ + gap});
  offset_ += gap;
}

void SafetensorsStreamWriter::begin_array(const std::string& name, TensorDType dtype, std::vector<int64_t> shape) {
  UPG_CHECK(!finished_ && data_, "safetensors writer '", path_, "': add after finish");
  UPG_CHECK(!open_array_, "safetensors writer '", path_, "': array '", name, "' begun inside another");
  UPG_CHECK(!name.empty() && name != "__metadata__" && name.rfind(pad_prefix_, 0) != 0,
            "safetensors writer '", path_, "': invalid array name '", name, "'");
  UPG_CHECK(!names_.count(name), "safetensors writer '", path_, "': array '", name, "' added twice");
  uint64_t numel = 1;
  for (int64_t d : shape) {
    UPG_CHECK(d >= 0, "safetensors writer '", path_, "': array '", name, "' has a negative dimension in ",
              shape_to_string(shape));
    UPG_CHECK(!__builtin_mul_overflow(numel, static_cast<uint64_t>(d), &numel), "safetensors writer: array '",
              name, "' shape ", shape_to_string(shape), " overflows");
  }
  pad_to_alignment();
  array_need_ = numel * tensor_dtype_size(dtype);
  array_written_ = 0;
  open_array_ = true;
  names_[name] = entries_.size();
  entries_.push_back(Entry{name, dtype, std::move(shape), offset_, offset_});
}

void SafetensorsStreamWriter::write(const void* data, size_t n) {
  UPG_CHECK(open_array_, "safetensors writer '", path_, "': write outside an array");
  Entry& e = entries_.back();
  UPG_CHECK(array_written_ + n <= array_need_, "safetensors writer '", path_, "': array '", e.name, "' shape ",
            shape_to_string(e.shape), " x ", tensor_dtype_name(e.dtype), " needs ", array_need_,
            " bytes, given more");
  if (n) UPG_CHECK(std::fwrite(data, 1, n, data_) == n, "cannot write '", data_tmp_, "': ", std::strerror(errno));
  array_written_ += n;
}

void SafetensorsStreamWriter::end_array() {
  UPG_CHECK(open_array_, "safetensors writer '", path_, "': end_array without begin_array");
  Entry& e = entries_.back();
  open_array_ = false;
  UPG_CHECK(array_written_ == array_need_, "safetensors writer '", path_, "': array '", e.name, "' shape ",
            shape_to_string(e.shape), " x ", tensor_dtype_name(e.dtype), " needs ", array_need_, " bytes, given ",
            array_written_);
  offset_ += array_need_;
  e.end = offset_;
  ++count_;
}

void SafetensorsStreamWriter::add_array(const std::string& name, TensorDType dtype, std::vector<int64_t> shape,
                                        const void* data, size_t nbytes) {
  begin_array(name, dtype, std::move(shape));
  write(data, nbytes);
  end_array();
}

std::string SafetensorsStreamWriter::finish_to_temp(const std::map<std::string, std::string>& metadata) {
  UPG_CHECK(!finished_ && data_, "safetensors writer '", path_, "': finished twice");
  UPG_CHECK(!open_array_, "safetensors writer '", path_, "': finish inside array '", entries_.back().name, "'");
  nlohmann::json header = nlohmann::json::object();
  if (!metadata.empty()) {
    nlohmann::json m = nlohmann::json::object();
    for (const auto& [k, v] : metadata) m[k] = v;
    header["__metadata__"] = std::move(m);
  }
  for (const Entry& e : entries_)
    header[e.name] = {{"dtype", tensor_dtype_name(e.dtype)}, {"shape", e.shape}, {"data_offsets", {e.begin, e.end}}};
  // Invalid UTF-8 in names or metadata (from a caller) is an error, not a crash.
  std::string h;
  try {
    h = header.dump();
  } catch (const nlohmann::json::exception& ex) {
    throw Error(str_cat("safetensors writer '", path_, "': header is not valid UTF-8: ", ex.what()));
  }
  // The reference safetensors reader refuses headers above 100 MB.
  UPG_CHECK(h.size() < 100000000 - 64, "safetensors writer '", path_, "': the header would be ", h.size(),
            " bytes; safetensors readers accept at most 100,000,000 (split the model into shards)");
  const uint64_t hal = std::max<uint64_t>(align_, 8);
  while ((8 + h.size()) % hal != 0) h.push_back(' ');

  std::string tmp;
  std::FILE* out = create_temp_file(path_ + ".tmp-", tmp);
  bool ok = true;
  int err = 0;
  auto fail = [&] {
    if (ok) err = errno;
    ok = false;
  };
  uint8_t len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(static_cast<uint64_t>(h.size()) >> (8 * i));
  if (std::fwrite(len, 1, 8, out) != 8 || std::fwrite(h.data(), 1, h.size(), out) != h.size()) fail();
  if (ok && std::fflush(data_) != 0) fail();
  if (ok && std::fseek(data_, 0, SEEK_SET) != 0) fail();
  std::unique_ptr<uint8_t[]> buf(new uint8_t[1 << 22]);
  uint64_t copied = 0;
  while (ok) {
    size_t n = std::fread(buf.get(), 1, 1 << 22, data_);
    if (n == 0) {
      if (std::ferror(data_)) fail();
      break;
    }
    if (std::fwrite(buf.get(), 1, n, out) != n) fail();
    copied += n;
  }
  if (ok && copied != offset_) {
    ok = false;
    err = EIO;
  }
  if (ok && std::fflush(out) != 0) fail();
  if (ok && ::fsync(fileno(out)) != 0) fail();
  if (std::fclose(out) != 0) fail();
  if (!ok) {
    std::remove(tmp.c_str());
    cleanup();
    finished_ = true;
    throw Error(str_cat("cannot write '", tmp, "' (for '", path_, "'): ", std::strerror(err ? err : EIO)));
  }
  cleanup();
  finished_ = true;
  return tmp;
}

void SafetensorsStreamWriter::finish(const std::map<std::string, std::string>& metadata) {
  const std::string tmp = finish_to_temp(metadata);
  if (std::rename(tmp.c_str(), path_.c_str()) != 0) {
    int err = errno;
    std::remove(tmp.c_str());
    throw Error(str_cat("cannot rename '", tmp, "' to '", path_, "': ", std::strerror(err)));
  }
}

}  // namespace upg
