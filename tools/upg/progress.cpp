#include "progress.h"

#include <unistd.h>

#include <cstdio>

namespace upg::cli {

Progress::Progress(std::string label, size_t total_items, uint64_t total_bytes, bool force)
    : label_(std::move(label)), total_items_(total_items), total_bytes_(total_bytes),
      enabled_(force || ::isatty(STDERR_FILENO)), start_(std::chrono::steady_clock::now()), last_(start_) {}

void Progress::update(size_t items_done, uint64_t bytes_done, const std::string& item) {
  if (!enabled_) return;
  const auto now = std::chrono::steady_clock::now();
  if (drawn_ && items_done < total_items_ && now - last_ < std::chrono::milliseconds(100)) return;
  last_ = now;
  const double secs = std::chrono::duration<double>(now - start_).count();
  const double mbps = secs > 0 ? bytes_done / 1e6 / secs : 0.0;
  double frac = total_bytes_ ? static_cast<double>(bytes_done) / total_bytes_
                             : (total_items_ ? static_cast<double>(items_done) / total_items_ : 1.0);
  const long eta = frac > 0 ? static_cast<long>(secs * (1 - frac) / frac + 0.5) : 0;
  std::string shown = item.size() > 48 ? "..." + item.substr(item.size() - 45) : item;
  std::fprintf(stderr, "\r%s %zu/%zu tensors | %.1f MB/s | ETA %ld:%02ld | %-48s", label_.c_str(), items_done,
               total_items_, mbps, eta / 60, eta % 60, shown.c_str());
  std::fflush(stderr);
  drawn_ = true;
}

void Progress::finish() {
  if (enabled_ && drawn_) {
    std::fprintf(stderr, "\n");
    std::fflush(stderr);
  }
  drawn_ = false;
}

}  // namespace upg::cli
