// Helpers for the UPG container tests: temporary directories, reading/rewriting a safetensors
// header in place (to build damaged files), running the Python safetensors checker.
#pragma once
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "test_util.h"

namespace upg::test {

// A fresh directory under the system temp dir, removed at destruction.
struct ScratchDir {
  std::filesystem::path path;
  explicit ScratchDir(const std::string& tag) {
    path = std::filesystem::temp_directory_path() /
           ("upg_test_" + tag + "_" + std::to_string(::getpid()) + "_" + std::to_string(std::rand()));
    std::filesystem::remove_all(path);
    std::filesystem::create_directories(path);
  }
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  std::string operator/(const std::string& name) const { return (path / name).string(); }
  // Names of the files in the directory, sorted.
  std::vector<std::string> files() const {
    std::vector<std::string> v;
    for (const auto& e : std::filesystem::directory_iterator(path)) v.push_back(e.path().filename().string());
    std::sort(v.begin(), v.end());
    return v;
  }
};

inline std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(f), {});
}
inline void write_bytes(const std::string& path, const std::vector<uint8_t>& b) {
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

// A safetensors file split into its header JSON and data section.
struct SplitFile {
  nlohmann::json header;
  std::vector<uint8_t> data;
};
inline SplitFile split_safetensors(const std::string& path) {
  std::vector<uint8_t> b = read_bytes(path);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = n << 8 | b[i];
  SplitFile s;
  s.header = nlohmann::json::parse(b.begin() + 8, b.begin() + 8 + static_cast<long>(n));
  s.data.assign(b.begin() + 8 + static_cast<long>(n), b.end());
  return s;
}
// Writes header + data, the header padded with spaces to keep the data section 64-byte aligned.
inline void join_safetensors(const std::string& path, const SplitFile& s) {
  std::string h = s.header.dump();
  while ((8 + h.size()) % 64) h.push_back(' ');
  std::vector<uint8_t> b(8);
  for (int i = 0; i < 8; ++i) b[i] = static_cast<uint8_t>(static_cast<uint64_t>(h.size()) >> (8 * i));
  b.insert(b.end(), h.begin(), h.end());
  b.insert(b.end(), s.data.begin(), s.data.end());
  write_bytes(path, b);
}
// Copies src to dst after applying `edit` to its header.
inline void rewrite_header(const std::string& src, const std::string& dst,
                           const std::function<void(nlohmann::json&)>& edit) {
  SplitFile s = split_safetensors(src);
  edit(s.header);
  join_safetensors(dst, s);
}
// Same, for the "upg.tensors" table inside the metadata.
inline void rewrite_table(const std::string& src, const std::string& dst,
                          const std::function<void(nlohmann::json&)>& edit) {
  rewrite_header(src, dst, [&](nlohmann::json& h) {
    nlohmann::json t = nlohmann::json::parse(h["__metadata__"]["upg.tensors"].get<std::string>());
    edit(t);
    h["__metadata__"]["upg.tensors"] = t.dump();
  });
}

// Runs tests/scripts/check_safetensors.py with `args`; returns its exit status.
inline int run_python_checker(const std::string& args) {
  const std::string cmd = "/usr/bin/python3 " + source_dir() + "/tests/scripts/check_safetensors.py " + args;
  int rc = std::system(cmd.c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

}  // namespace upg::test
