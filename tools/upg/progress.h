// A one-line progress display on stderr for long loops over tensors:
//   "verify  123/291 tensors | 812.4 MB/s | ETA 0:42 | model.layers.12.mlp.down_proj.weight"
// Shown only when stderr is a terminal or when forced (--progress); redrawn at most 10 times a
// second; finish() ends the line. Rates and ETA use bytes when a byte total is given.
#pragma once
#include <chrono>
#include <cstdint>
#include <string>

namespace upg::cli {

class Progress {
 public:
  Progress(std::string label, size_t total_items, uint64_t total_bytes, bool force);
  ~Progress() { finish(); }
  // Called after an item: items and bytes done so far, the item's name.
  void update(size_t items_done, uint64_t bytes_done, const std::string& item);
  void finish();
  bool enabled() const { return enabled_; }

 private:
  std::string label_;
  size_t total_items_;
  uint64_t total_bytes_;
  bool enabled_, drawn_ = false;
  std::chrono::steady_clock::time_point start_, last_;
};

}  // namespace upg::cli
