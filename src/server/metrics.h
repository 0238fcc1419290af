// Server metrics in the Prometheus text format (version 0.0.4): counters, gauges read at scrape
// time, and latency histograms. Thread-safe.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace upg::server {

class Histogram {
 public:
  explicit Histogram(std::vector<double> upper_bounds);
  void observe(double v);
  // Lines "<name>_bucket{<labels>le="..."} n", _sum and _count.
  std::string render(const std::string& name, const std::string& labels) const;

 private:
  mutable std::mutex mu_;
  std::vector<double> bounds_;
  std::vector<uint64_t> counts_;  // per bucket (not cumulative)
  double sum_ = 0;
  uint64_t count_ = 0;
};

class Metrics {
 public:
  // Counters by name and label set, e.g. add("upg_requests_total", "model=\"refA\",status=\"200\"").
  void add(const std::string& name, const std::string& labels, double v = 1);
  // A histogram per (name, labels), created on first use with these bounds.
  Histogram& histogram(const std::string& name, const std::string& labels, const std::vector<double>& bounds);
  // Names' help texts and types, printed once per metric family.
  void describe(const std::string& name, const std::string& type, const std::string& help);
  // Gauges are read when rendering: fn appends "name{labels} value" lines.
  void add_gauges(std::function<void(std::string&)> fn);
  std::string render() const;

 private:
  mutable std::mutex mu_;
  std::map<std::string, std::pair<std::string, std::string>> meta_;  // name -> (type, help)
  std::map<std::string, std::map<std::string, double>> counters_;
  std::map<std::string, std::map<std::string, std::unique_ptr<Histogram>>> histograms_;
  std::vector<std::function<void(std::string&)>> gauges_;
};

// Bucket bounds for latencies in seconds (1 ms .. 60 s) and for batch sizes (1 .. 512).
const std::vector<double>& latency_buckets();
const std::vector<double>& size_buckets();

}  // namespace upg::server
