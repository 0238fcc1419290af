#include "cmd_eval_common.h"

#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>

#include "base/error.h"
#include "eval/data_files.h"

namespace upg::cli {

namespace {
volatile std::sig_atomic_t g_interrupted = 0;

extern "C" void on_sigint(int) {
  g_interrupted = 1;
  std::signal(SIGINT, SIG_DFL);  // a second Ctrl-C ends the process
}

std::string fmt_duration(double s) {
  if (!(s >= 0) || s > 1e7) return "?";
  char buf[32];
  const long t = static_cast<long>(s + 0.5);
  if (t >= 3600)
    std::snprintf(buf, sizeof buf, "%ldh%02ldm", t / 3600, (t / 60) % 60);
  else
    std::snprintf(buf, sizeof buf, "%ldm%02lds", t / 60, t % 60);
  return buf;
}
}  // namespace

void install_interrupt_handler() { std::signal(SIGINT, on_sigint); }
bool interrupted() { return g_interrupted != 0; }

void write_json_file(const std::string& path, const nlohmann::json& j) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    UPG_CHECK(f.good(), "cannot write '", tmp, "'");
    f << j.dump(1) << "\n";
    f.close();
    UPG_CHECK(f.good(), "error writing '", tmp, "'");
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  UPG_CHECK(!ec, "cannot rename '", tmp, "' to '", path, "': ", ec.message());
}

std::string default_data_path(const std::string& rel) {
  const std::string root = shared_data_dir();
  if (root.empty() || rel.empty()) return "";
  std::filesystem::path p = std::filesystem::path(root) / rel;
  return std::filesystem::exists(p) ? p.string() : "";
}

ProgressLine::ProgressLine(std::string label, int64_t total, std::string unit)
    : label_(std::move(label)), unit_(std::move(unit)), total_(total), tty_(isatty(STDERR_FILENO)) {
  t0_ = last_ = std::chrono::steady_clock::now();
}

void ProgressLine::update(int64_t done, const std::string& extra) {
  if (!tty_) return;
  auto now = std::chrono::steady_clock::now();
  if (start_done_ < 0) start_done_ = done > 0 ? done - 1 : 0;  // resumed items do not count for the rate
  if (drawn_ && done < total_ && std::chrono::duration<double>(now - last_).count() < 0.2) return;
  last_ = now;
  const double el = std::chrono::duration<double>(now - t0_).count();
  const double rate = el > 0 ? static_cast<double>(done - start_done_) / el : 0;
  const double eta = rate > 0 ? static_cast<double>(total_ - done) / rate : -1;
  char buf[512];
  std::snprintf(buf, sizeof buf, "\r[%s] %lld/%lld %s%s%s | %.2f %s/s | elapsed %s | ETA %s \x1b[K", label_.c_str(),
                static_cast<long long>(done), static_cast<long long>(total_), unit_.c_str(),
                extra.empty() ? "" : " | ", extra.c_str(), rate, unit_.c_str(), fmt_duration(el).c_str(),
                fmt_duration(eta).c_str());
  std::cerr << buf << std::flush;
  drawn_ = true;
}

void ProgressLine::finish() {
  if (tty_ && drawn_) std::cerr << "\n" << std::flush;
  drawn_ = false;
}

EvalProgress progress_on(ProgressLine& bar) {
  return [&bar](int64_t done, int64_t total, const std::string& status) {
    bar.set_total(total);
    bar.update(done, status);
    return !interrupted();
  };
}

EvalHooks eval_hooks(ProgressLine& bar, const std::string& json_path) {
  EvalHooks hooks;
  hooks.progress = progress_on(bar);
  if (!json_path.empty()) {
    auto last_save = std::make_shared<std::chrono::steady_clock::time_point>(std::chrono::steady_clock::now());
    hooks.checkpoint = [json_path, last_save](const std::function<nlohmann::json()>& snapshot) {
      const auto now = std::chrono::steady_clock::now();
      if (std::chrono::duration<double>(now - *last_save).count() > 5) {
        write_json_file(json_path, snapshot());
        *last_save = now;
      }
    };
  }
  return hooks;
}

}  // namespace upg::cli
