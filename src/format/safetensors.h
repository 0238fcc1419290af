// Safetensors files: reader (zero-copy over a memory mapping) and writer.
//
// Layout (https://github.com/huggingface/safetensors): 8-byte little-endian header length N, then N
// bytes of UTF-8 JSON: {"__metadata__": {str: str}, "<tensor>": {"dtype": "BF16", "shape": [r, c],
// "data_offsets": [begin, end]}, ...}, then the data section. Offsets are relative to the start of the
// data section; tensor data is row-major, little-endian.
//
// The reader validates everything before handing out a TensorView (truncation, header length, JSON,
// dtype names, shapes, offsets against shape x dtype size, overlaps) and throws upg::Error naming the
// file and the tensor. The writer produces files the Python `safetensors` package also accepts:
// header padded with spaces so the data section starts 8-byte aligned, tensors packed without gaps,
// ordered by decreasing element size so every tensor is naturally aligned.
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

#include "base/dtype.h"
#include "base/mapped_file.h"
#include "base/tensor_view.h"

namespace upg {

class SafetensorsFile {
 public:
  // Maps `path` and parses its header. Throws Error naming the path on any problem.
  static SafetensorsFile open(const std::string& path);
  // Parses an existing mapping (takes ownership).
  explicit SafetensorsFile(MappedFile file);

  SafetensorsFile(SafetensorsFile&&) noexcept = default;
  SafetensorsFile& operator=(SafetensorsFile&&) noexcept = default;

  const std::string& path() const { return file_.path(); }
  // All tensors, ordered by their position in the file.
  const std::vector<TensorView>& tensors() const { return tensors_; }
  // nullptr when absent.
  const TensorView* find(const std::string& name) const;
  // Throws Error naming the file and tensor when absent.
  const TensorView& get(const std::string& name) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

 private:
  void parse();
  MappedFile file_;
  std::vector<TensorView> tensors_;
  std::unordered_map<std::string, size_t> index_;
  std::map<std::string, std::string> metadata_;
};

// Builds a safetensors file in memory-light fashion: tensors are either copied (add) or referenced
// (add_ref: the caller keeps the bytes alive until write() returns).
class SafetensorsWriter {
 public:
  void set_metadata(const std::string& key, const std::string& value) { metadata_[key] = value; }
  // Throws Error if the name is taken or nbytes != numel(shape) * tensor_dtype_size(dtype).
  void add(const std::string& name, TensorDType dtype, std::vector<int64_t> shape, const void* data,
           size_t nbytes);
  void add_ref(const std::string& name, TensorDType dtype, std::vector<int64_t> shape, const void* data,
               size_t nbytes);
  // Convenience for fp32 / int32 data.
  void add_f32(const std::string& name, std::vector<int64_t> shape, const std::vector<float>& v) {
    add(name, TensorDType::F32, std::move(shape), v.data(), v.size() * sizeof(float));
  }
  void add_i32(const std::string& name, std::vector<int64_t> shape, const std::vector<int32_t>& v) {
    add(name, TensorDType::I32, std::move(shape), v.data(), v.size() * sizeof(int32_t));
  }
  size_t size() const { return entries_.size(); }

  // Writes header + data to "<path>.tmp-<pid>", flushes, then renames it onto `path`, so `path` is
  // either absent/old or complete. Throws Error naming the path on I/O failure.
  void write(const std::string& path) const;

 private:
  struct Entry {
    std::string name;
    TensorDType dtype;
    std::vector<int64_t> shape;
    const uint8_t* data;
    size_t nbytes;
    std::vector<uint8_t> owned;
  };
  void add_entry(Entry e);
  std::vector<Entry> entries_;
  std::unordered_map<std::string, size_t> names_;
  std::map<std::string, std::string> metadata_;
};

}  // namespace upg
