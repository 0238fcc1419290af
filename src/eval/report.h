// Comparing an original model with its compressed version (`upg compare`): paired statistics on
// the same items, and the report written from the two models' results (report.md, report.json,
// quality_vs_size.svg). Everything here is plain data in, text out; running the models is the
// command's job (tools/upg/cmd_compare.cpp).
//
// Definitions used in the report:
//  * retention = compressed / original for scores where higher is better (accuracy, pass@1),
//    original / compressed for perplexity, so that 1 means "no loss" and < 1 always means worse;
//    undefined (null) for KL divergence, whose original value is 0 by definition;
//  * standard error of an accuracy: sqrt(p (1 - p) / (n - 1)) (eval/metrics.h, as lm-eval);
//  * paired test of two accuracies on the same items: McNemar's exact test, i.e. the two-sided
//    binomial test with p = 1/2 on the discordant pairs (items right for exactly one model):
//    p = min(1, 2 * P[X <= min(b, c)]), X ~ Binomial(b + c, 1/2); p = 1 when there are none.
//  * bits per weight = 8 * stored bytes of the weight matrices / their number of weights.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace upg {

// Two-sided exact binomial test of k successes in n trials with p = 1/2:
// min(1, 2 * sum_{i <= min(k, n-k)} C(n, i) / 2^n); 1 when n = 0. Computed in log space (exact to
// double rounding for any n).
double binomial_two_sided_half(int64_t k, int64_t n);

struct PairedTest {
  int64_t n = 0;             // items
  int64_t both = 0;          // right for both models
  int64_t only_original = 0; // right for the original only (b)
  int64_t only_compressed = 0;  // right for the compressed model only (c)
  int64_t neither = 0;
  double p_value = 1;        // McNemar exact (binomial on b + c discordant pairs)
};

// Paired outcomes of the same items (true = correct). Throws Error when the sizes differ.
PairedTest mcnemar_exact(const std::vector<bool>& original, const std::vector<bool>& compressed);

struct ModelInfo {
  std::string path;
  uint64_t file_bytes = 0;       // the .upg file, or the weight files of a Hugging Face directory
  uint64_t weight_bytes = 0;     // stored bytes of the weight matrices (Model::weight_bytes)
  uint64_t matrix_weights = 0;   // weights in those matrices (sum of rows x cols)
  double bits_per_weight() const {
    return matrix_weights ? 8.0 * static_cast<double>(weight_bytes) / static_cast<double>(matrix_weights) : 0.0;
  }
};

struct TaskScore {
  double value = 0, stderr_ = 0;  // stderr_ 0 when unknown
};

struct TaskComparison {
  TaskComparison() = default;
  TaskComparison(std::string task_, std::string metric_, bool higher_is_better_)
      : task(std::move(task_)), metric(std::move(metric_)), higher_is_better(higher_is_better_) {}

  std::string task;        // "mmlu", "ppl", ...
  std::string metric;      // "acc", "pass@1", "ppl", "kld"
  bool higher_is_better = true;
  bool defined_for_original = true;  // false for kld (0 by definition: no measurement)
  TaskScore original, compressed;
  int64_t n = 0;           // items / windows / tokens the scores are over
  std::string unit;        // "questions", "problems", "windows", "tokens"
  std::optional<PairedTest> paired;  // accuracies and pass@1
  std::vector<std::string> extra;    // further lines for the report ("same top token 99.1%")
  // nullopt when undefined (see the file comment).
  std::optional<double> retention() const;
};

struct CompareReport {
  ModelInfo original, compressed;
  std::vector<TaskComparison> tasks;
  std::vector<std::string> commands;    // to reproduce: the compare command and the per-task evals
  std::vector<std::string> data_files;  // "path (bytes, xxh64 ...)"
  std::string upg_version, created;     // created: UTC time, ISO 8601
  int limit = -1;
};

nlohmann::json report_json(const CompareReport& r);
std::string report_markdown(const CompareReport& r);
// Score against bits per weight, one panel per task (each with its own y axis), the two models
// as points with +/- 1 standard error bars, joined by a line. Self-contained SVG 1.1.
std::string report_svg(const CompareReport& r);

// Writes dir/report.md, dir/report.json and dir/quality_vs_size.svg (creating dir).
void write_report(const CompareReport& r, const std::string& dir);

}  // namespace upg
