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

// Reads a whole (small) text file; throws Error naming the path when it cannot.
std::string read_text_file(const std::string& path);
// Writes text to path (replacing it); throws Error naming the path when it cannot.
void write_text_file(const std::string& path, const std::string& text);
bool file_exists(const std::string& path);

}  // namespace upg
