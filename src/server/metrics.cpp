#include "server/metrics.h"

#include <cstdio>
#include <memory>

namespace upg::server {

static std::string num(double v) {
  char b[64];
  std::snprintf(b, sizeof b, "%.17g", v);
  return b;
}

static std::string with(const std::string& labels, const std::string& extra) {
  if (labels.empty()) return "{" + extra + "}";
  return "{" + labels + "," + extra + "}";
}

Histogram::Histogram(std::vector<double> upper_bounds)
    : bounds_(std::move(upper_bounds)), counts_(bounds_.size() + 1, 0) {}

void Histogram::observe(double v) {
  std::lock_guard lk(mu_);
  size_t i = 0;
  while (i < bounds_.size() && v > bounds_[i]) ++i;
  ++counts_[i];
  sum_ += v;
  ++count_;
}

std::string Histogram::render(const std::string& name, const std::string& labels) const {
  std::lock_guard lk(mu_);
  std::string out;
  uint64_t cum = 0;
  for (size_t i = 0; i < bounds_.size(); ++i) {
    cum += counts_[i];
    out += name + "_bucket" + with(labels, "le=\"" + num(bounds_[i]) + "\"") + " " + std::to_string(cum) + "\n";
  }
  out += name + "_bucket" + with(labels, "le=\"+Inf\"") + " " + std::to_string(count_) + "\n";
  const std::string l = labels.empty() ? "" : "{" + labels + "}";
  out += name + "_sum" + l + " " + num(sum_) + "\n";
  out += name + "_count" + l + " " + std::to_string(count_) + "\n";
  return out;
}

void Metrics::add(const std::string& name, const std::string& labels, double v) {
  std::lock_guard lk(mu_);
  counters_[name][labels] += v;
}

Histogram& Metrics::histogram(const std::string& name, const std::string& labels, const std::vector<double>& bounds) {
  std::lock_guard lk(mu_);
  auto& h = histograms_[name][labels];
  if (!h) h = std::make_unique<Histogram>(bounds);
  return *h;
}

void Metrics::describe(const std::string& name, const std::string& type, const std::string& help) {
  std::lock_guard lk(mu_);
  meta_[name] = {type, help};
}

void Metrics::add_gauges(std::function<void(std::string&)> fn) {
  std::lock_guard lk(mu_);
  gauges_.push_back(std::move(fn));
}

std::string Metrics::render() const {
  std::lock_guard lk(mu_);
  std::string out;
  auto header = [&](const std::string& name) {
    auto it = meta_.find(name);
    if (it == meta_.end()) return;
    out += "# HELP " + name + " " + it->second.second + "\n";
    out += "# TYPE " + name + " " + it->second.first + "\n";
  };
  for (const auto& [name, series] : counters_) {
    header(name);
    for (const auto& [labels, v] : series) out += name + (labels.empty() ? "" : "{" + labels + "}") + " " + num(v) + "\n";
  }
  for (const auto& [name, series] : histograms_) {
    header(name);
    for (const auto& [labels, h] : series) out += h->render(name, labels);
  }
  for (const auto& g : gauges_) g(out);
  return out;
}

const std::vector<double>& latency_buckets() {
  static const std::vector<double> b = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                        0.5,   1,      2.5,   5,    10,    30,   60};
  return b;
}

const std::vector<double>& size_buckets() {
  static const std::vector<double> b = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512};
  return b;
}

}  // namespace upg::server
