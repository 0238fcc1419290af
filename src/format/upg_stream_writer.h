// Writes one safetensors file without holding its data in memory: arrays are appended to a
// temporary data file ("<path>.data.tmp-XXXXXX") as they arrive; finishing writes the 8-byte header
// length, the JSON header and then copies the data behind it into "<path>.tmp-XXXXXX", which is
// renamed onto `path` only once complete. An unfinished writer (error, exception, destructor
// without finish) removes every temporary file it made, so `path` is never left damaged.
//
// Alignment: with align = A, every array starts at a multiple of A bytes from the start of the
// final file: the header is padded with spaces so that 8 + header length is a multiple of
// max(A, 8), and each gap between arrays is covered by a U8 array "<pad_prefix><n>" of the gap's
// length (safetensors readers require the data section to be covered without holes). A = 1 packs
// arrays without padding arrays (the header still ends 8-byte aligned).
#pragma once
#include <cstdint>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "base/dtype.h"

namespace upg {

class SafetensorsStreamWriter {
 public:
  SafetensorsStreamWriter(std::string path, uint64_t align, std::string pad_prefix = "__pad__.");
  ~SafetensorsStreamWriter();
  SafetensorsStreamWriter(const SafetensorsStreamWriter&) = delete;
  SafetensorsStreamWriter& operator=(const SafetensorsStreamWriter&) = delete;

  // One array in pieces: begin_array, write() any number of times, end_array (which checks that
  // exactly numel(shape) * dtype size bytes were written). Throws Error naming the array.
  void begin_array(const std::string& name, TensorDType dtype, std::vector<int64_t> shape);
  void write(const void* data, size_t n);
  void end_array();
  // All at once.
  void add_array(const std::string& name, TensorDType dtype, std::vector<int64_t> shape, const void* data,
                 size_t nbytes);

  const std::string& path() const { return path_; }
  // Size of the data section so far, padding included.
  uint64_t data_bytes() const { return offset_; }
  // Arrays added (padding arrays not counted).
  size_t count() const { return count_; }

  // Writes the complete file to a temporary name beside path() and returns that name; the caller
  // owns it from then on (renames it into place or removes it). The writer is then finished.
  std::string finish_to_temp(const std::map<std::string, std::string>& metadata);
  // finish_to_temp + rename onto path().
  void finish(const std::map<std::string, std::string>& metadata);

 private:
  struct Entry {
    std::string name;
    TensorDType dtype;
    std::vector<int64_t> shape;
    uint64_t begin, end;
  };
  void pad_to_alignment();
  void cleanup() noexcept;

  std::string path_;
  uint64_t align_;
  std::string pad_prefix_;
  std::string data_tmp_;
  std::FILE* data_ = nullptr;
  std::vector<Entry> entries_;
  std::map<std::string, size_t> names_;
  uint64_t offset_ = 0;
  size_t count_ = 0;
  int pads_ = 0;
  bool open_array_ = false;
  uint64_t array_need_ = 0, array_written_ = 0;
  bool finished_ = false;
};

// Creates a unique temporary file from `prefix` + "XXXXXX" (mkstemp); returns its name and an
// open FILE* for writing. Throws Error naming the path on failure.
std::FILE* create_temp_file(const std::string& prefix, std::string& name_out);

}  // namespace upg
