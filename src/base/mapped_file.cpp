#include "base/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "base/error.h"

namespace upg {

MappedFile::MappedFile(const std::string& path) : path_(path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  UPG_CHECK(fd >= 0, "cannot open '", path, "': ", std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throw Error(str_cat("'", path, "' is not a regular file"));
  }
  size_ = static_cast<size_t>(st.st_size);
  if (size_ > 0) {
    void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      int e = errno;
      ::close(fd);
      throw Error(str_cat("cannot memory-map '", path, "': ", std::strerror(e)));
    }
    data_ = static_cast<const uint8_t*>(p);
  }
  ::close(fd);
}

MappedFile::~MappedFile() { release(); }

MappedFile::MappedFile(MappedFile&& o) noexcept
    : path_(std::move(o.path_)), data_(o.data_), size_(o.size_) {
  o.data_ = nullptr;
  o.size_ = 0;
}

MappedFile& MappedFile::operator=(MappedFile&& o) noexcept {
  if (this != &o) {
    release();
    path_ = std::move(o.path_);
    data_ = o.data_;
    size_ = o.size_;
    o.data_ = nullptr;
    o.size_ = 0;
  }
  return *this;
}

void MappedFile::release() {
  if (data_) ::munmap(const_cast<uint8_t*>(data_), size_);
  data_ = nullptr;
  size_ = 0;
}

void check_input_size(const std::string& what, uint64_t size, uint64_t max_bytes) {
  UPG_CHECK(size <= max_bytes, what, " is ", size, " bytes, larger than the ", max_bytes,
            " bytes accepted for it; refusing to read it");
}

std::string read_text_file(const std::string& path, size_t max_bytes) {
  struct stat st {};
  UPG_CHECK(::stat(path.c_str(), &st) == 0, "cannot open '", path, "': ", std::strerror(errno));
  UPG_CHECK(S_ISREG(st.st_mode), "'", path, "' is not a regular file");
  check_input_size(str_cat("'", path, "'"), static_cast<uint64_t>(st.st_size), max_bytes);
  std::ifstream f(path, std::ios::binary);
  UPG_CHECK(f.good(), "cannot read '", path, "'");
  std::string out;
  out.resize(static_cast<size_t>(st.st_size));
  f.read(out.data(), static_cast<std::streamsize>(out.size()));
  out.resize(static_cast<size_t>(f.gcount()));
  // The file may have grown since stat: read what is left, up to the cap.
  char buf[65536];
  while (f.read(buf, sizeof(buf)), f.gcount() > 0) {
    check_input_size(str_cat("'", path, "'"), out.size() + static_cast<uint64_t>(f.gcount()), max_bytes);
    out.append(buf, static_cast<size_t>(f.gcount()));
  }
  UPG_CHECK(!f.bad(), "cannot read '", path, "'");
  return out;
}

void write_text_file(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary);
  f.write(text.data(), static_cast<std::streamsize>(text.size()));
  f.close();
  UPG_CHECK(f.good(), "cannot write '", path, "'");
}

bool file_exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

}  // namespace upg
