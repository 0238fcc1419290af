// Read-only memory mapping of a whole file. Loading a model maps its files and parses headers;
// tensor data is used in place, never copied.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace upg {

class MappedFile {
 public:
  MappedFile() = default;
  // Throws Error naming the path if the file is missing, unreadable or a directory.
  explicit MappedFile(const std::string& path);
  ~MappedFile();
  MappedFile(MappedFile&& o) noexcept;
  MappedFile& operator=(MappedFile&& o) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  void release();
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

// Caps on input files, checked before they are read or parsed (the files come from strangers: a
// multi-gigabyte "config.json" must fail with a message, not exhaust memory). The one place they live.
inline constexpr size_t kMaxConfigFileBytes = size_t{16} << 20;      // config.json, tokenizer_config.json,
                                                                     // generation_config.json, chat templates,
                                                                     // index and recipe JSON
inline constexpr size_t kMaxTokenizerFileBytes = size_t{256} << 20;  // tokenizer.json, vocab files (real: 1-20 MB)
inline constexpr size_t kMaxHeaderBytes = size_t{100} << 20;         // a safetensors / UPG JSON header
inline constexpr size_t kMaxDataFileBytes = size_t{2} << 30;        // an evaluation data file, decompressed

// Throws Error naming `what`, its size and the cap when size > max_bytes.
void check_input_size(const std::string& what, uint64_t size, uint64_t max_bytes);

// Reads a whole text file; throws Error naming the path when it cannot, or when it is larger than
// max_bytes (the size is checked before anything is read).
std::string read_text_file(const std::string& path, size_t max_bytes = SIZE_MAX);
// Writes text to path (replacing it); throws Error naming the path when it cannot.
void write_text_file(const std::string& path, const std::string& text);
bool file_exists(const std::string& path);

}  // namespace upg
