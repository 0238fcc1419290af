#include "eval/report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "base/error.h"

namespace upg {

double binomial_two_sided_half(int64_t k, int64_t n) {
  UPG_CHECK(n >= 0 && k >= 0 && k <= n, "binomial test: ", k, " successes out of ", n);
  if (n == 0) return 1.0;
  const int64_t m = std::min(k, n - k);
  // log C(n, i) - n log 2, summed with log-sum-exp.
  const double log_half_n = -static_cast<double>(n) * std::log(2.0);
  std::vector<double> terms;
  for (int64_t i = 0; i <= m; ++i)
    terms.push_back(std::lgamma(static_cast<double>(n) + 1) - std::lgamma(static_cast<double>(i) + 1) -
                    std::lgamma(static_cast<double>(n - i) + 1) + log_half_n);
  const double mx = *std::max_element(terms.begin(), terms.end());
  double s = 0;
  for (double t : terms) s += std::exp(t - mx);
  const double tail = std::exp(mx) * s;
  return std::min(1.0, 2.0 * tail);
}

PairedTest mcnemar_exact(const std::vector<bool>& original, const std::vector<bool>& compressed) {
  UPG_CHECK(original.size() == compressed.size(), "paired test: ", original.size(), " outcomes for the original but ",
            compressed.size(), " for the compressed model");
  PairedTest t;
  t.n = static_cast<int64_t>(original.size());
  for (size_t i = 0; i < original.size(); ++i) {
    t.both += original[i] && compressed[i];
    t.only_original += original[i] && !compressed[i];
    t.only_compressed += !original[i] && compressed[i];
    t.neither += !original[i] && !compressed[i];
  }
  t.p_value = binomial_two_sided_half(t.only_original, t.only_original + t.only_compressed);
  return t;
}

std::optional<double> TaskComparison::retention() const {
  if (!defined_for_original) return std::nullopt;
  const double num = higher_is_better ? compressed.value : original.value;
  const double den = higher_is_better ? original.value : compressed.value;
  if (den == 0) return num == 0 ? std::optional<double>(1.0) : std::nullopt;
  return num / den;
}

namespace {

std::string fmt(double v, int digits = 4) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

std::string fmt_p(double p) {
  char buf[64];
  if (p >= 0.001 || p == 0)
    std::snprintf(buf, sizeof buf, "%.4f", p);
  else
    std::snprintf(buf, sizeof buf, "%.2e", p);
  return buf;
}

std::string fmt_bytes(uint64_t b) {
  char buf[64];
  const double v = static_cast<double>(b);
  if (v >= 1e9)
    std::snprintf(buf, sizeof buf, "%.2f GB", v / 1e9);
  else if (v >= 1e6)
    std::snprintf(buf, sizeof buf, "%.2f MB", v / 1e6);
  else if (v >= 1e3)
    std::snprintf(buf, sizeof buf, "%.1f kB", v / 1e3);
  else
    std::snprintf(buf, sizeof buf, "%llu B", static_cast<unsigned long long>(b));
  return buf;
}

// Markdown table cell: '|' escaped, newlines as spaces.
std::string cell(std::string s) {
  std::string out;
  for (char c : s) {
    if (c == '|')
      out += "\\|";
    else if (c == '\n')
      out += ' ';
    else
      out += c;
  }
  return out;
}

std::string xml_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

std::string score_text(const TaskScore& s, bool with_err) {
  return with_err && s.stderr_ > 0 ? fmt(s.value) + " ± " + fmt(s.stderr_) : fmt(s.value);
}

nlohmann::json model_json(const ModelInfo& m) {
  return {{"path", m.path},
          {"file_bytes", m.file_bytes},
          {"weight_bytes", m.weight_bytes},
          {"matrix_weights", m.matrix_weights},
          {"bits_per_weight", m.bits_per_weight()}};
}

// Tick positions covering [lo, hi] with a 1-2-5 step, about `want` of them.
std::vector<double> nice_ticks(double lo, double hi, int want = 5) {
  const double range = hi - lo;
  if (!(range > 0)) return {lo};
  const double raw = range / want;
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  double step = mag;
  for (double m : {1.0, 2.0, 5.0, 10.0})
    if (m * mag >= raw) {
      step = m * mag;
      break;
    }
  std::vector<double> t;
  for (double v = std::ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) t.push_back(std::abs(v) < step * 1e-9 ? 0 : v);
  return t;
}

std::string tick_label(double v, double step) {
  int digits = 0;
  if (step > 0 && step < 1) digits = static_cast<int>(std::ceil(-std::log10(step) - 1e-9));
  return fmt(v, std::min(digits, 6));
}

}  // namespace

nlohmann::json report_json(const CompareReport& r) {
  nlohmann::json tasks = nlohmann::json::array();
  for (const auto& t : r.tasks) {
    nlohmann::json j = {{"task", t.task},
                        {"metric", t.metric},
                        {"higher_is_better", t.higher_is_better},
                        {"n", t.n},
                        {"unit", t.unit},
                        {"original", {{"value", t.defined_for_original ? nlohmann::json(t.original.value) : nlohmann::json()},
                                      {"stderr", t.original.stderr_}}},
                        {"compressed", {{"value", t.compressed.value}, {"stderr", t.compressed.stderr_}}},
                        {"extra", t.extra}};
    auto ret = t.retention();
    j["retention"] = ret ? nlohmann::json(*ret) : nlohmann::json();
    if (t.paired) {
      const auto& p = *t.paired;
      j["paired_test"] = {{"test", "McNemar exact (two-sided binomial on discordant pairs)"},
                          {"n", p.n},
                          {"both_correct", p.both},
                          {"only_original_correct", p.only_original},
                          {"only_compressed_correct", p.only_compressed},
                          {"neither_correct", p.neither},
                          {"p_value", p.p_value}};
    }
    tasks.push_back(std::move(j));
  }
  return {{"upg_version", r.upg_version},
          {"created", r.created},
          {"limit", r.limit},
          {"models", {{"original", model_json(r.original)}, {"compressed", model_json(r.compressed)}}},
          {"tasks", tasks},
          {"commands", r.commands},
          {"data_files", r.data_files},
          {"definitions",
           {{"retention", "compressed/original where higher is better; original/compressed for perplexity; "
                          "null for kld"},
            {"stderr", "accuracy: sqrt(p(1-p)/(n-1)); perplexity: delta method over windows; kld: llama.cpp's"},
            {"bits_per_weight", "8 * stored bytes of the weight matrices / number of their weights"}}}};
}

std::string report_markdown(const CompareReport& r) {
  std::string md;
  md += "# Quality of the compressed model against the original\n\n";
  md += "Generated by upg " + r.upg_version + (r.created.empty() ? "" : " on " + r.created) + ".";
  if (r.limit >= 0) md += " Limited run: --limit " + std::to_string(r.limit) + " (not the full benchmarks).";
  md += "\n\n## Models\n\n";
  md += "| | path | file size | weight matrices | weights | bits per weight |\n|---|---|---|---|---|---|\n";
  for (const auto* m : {&r.original, &r.compressed}) {
    md += str_cat("| ", m == &r.original ? "original" : "compressed", " | `", cell(m->path), "` | ",
                  fmt_bytes(m->file_bytes), " | ", fmt_bytes(m->weight_bytes), " | ", m->matrix_weights, " | ",
                  fmt(m->bits_per_weight(), 3), " |\n");
  }
  if (r.original.file_bytes > 0)
    md += "\nCompressed file size: " +
          fmt(100.0 * static_cast<double>(r.compressed.file_bytes) / static_cast<double>(r.original.file_bytes), 1) +
          "% of the original.\n";
  md += "\n## Results\n\n";
  md += "| task | metric | n | original | compressed | retention | paired test (McNemar exact) |\n"
        "|---|---|---|---|---|---|---|\n";
  for (const auto& t : r.tasks) {
    auto ret = t.retention();
    std::string paired = "n/a";
    if (t.paired)
      paired = str_cat("p = ", fmt_p(t.paired->p_value), " (only original right: ", t.paired->only_original,
                       ", only compressed right: ", t.paired->only_compressed, ")");
    md += str_cat("| ", cell(t.task), " | ", cell(t.metric), t.higher_is_better ? " ↑" : " ↓", " | ", t.n, " ",
                  cell(t.unit), " | ", t.defined_for_original ? score_text(t.original, true) : "0 (by definition)",
                  " | ", score_text(t.compressed, true), " | ", ret ? fmt(*ret) : "n/a", " | ", paired, " |\n");
  }
  bool any_extra = false;
  for (const auto& t : r.tasks) any_extra |= !t.extra.empty();
  if (any_extra) {
    md += "\n";
    for (const auto& t : r.tasks)
      for (const auto& e : t.extra) md += "- " + t.task + ": " + e + "\n";
  }
  md += "\n± is one standard error. Retention: compressed/original where higher is better, original/compressed "
        "for perplexity (1 = no loss, < 1 = worse). The paired test compares the two models on the same items: "
        "McNemar's exact test (two-sided binomial test on the items exactly one model gets right); a small p "
        "means the difference is unlikely to be chance.\n\n";
  md += "![quality vs size](quality_vs_size.svg)\n\n## Reproduce\n\n```sh\n";
  for (const auto& c : r.commands) md += c + "\n";
  md += "```\n";
  if (!r.data_files.empty()) {
    md += "\nData files:\n\n";
    for (const auto& d : r.data_files) md += "- `" + d + "`\n";
  }
  return md;
}

std::string report_svg(const CompareReport& r) {
  const int cols = 3, pw = 300, ph = 230, ml = 62, mr = 16, mt = 34, mb = 44, legend_h = 34;
  const int n = static_cast<int>(r.tasks.size());
  const int rows = std::max(1, (n + cols - 1) / cols);
  const int W = cols * pw, H = legend_h + rows * ph;
  const double bx[2] = {r.original.bits_per_weight(), r.compressed.bits_per_weight()};
  const double xmax_data = std::max({bx[0], bx[1], 1.0});
  std::vector<double> xt = nice_ticks(0, xmax_data * 1.1, 4);
  if (xt.size() > 1 && xt.back() < xmax_data * 1.1) xt.push_back(xt.back() + (xt[1] - xt[0]));  // end on a tick
  const double xmax = std::max(xt.back(), xmax_data * 1.1);
  const char* colors[2] = {"#1f77b4", "#d62728"};
  std::string s;
  char buf[512];
  std::snprintf(buf, sizeof buf,
                "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"%d\" height=\"%d\" "
                "viewBox=\"0 0 %d %d\" font-family=\"sans-serif\" font-size=\"11\">\n"
                "<rect width=\"%d\" height=\"%d\" fill=\"white\"/>\n",
                W, H, W, H, W, H);
  s += buf;
  // Legend.
  std::snprintf(buf, sizeof buf,
                "<circle cx=\"20\" cy=\"17\" r=\"5\" fill=\"%s\"/><text x=\"30\" y=\"21\">original (%.2f bits/weight)"
                "</text>\n<rect x=\"265\" y=\"12\" width=\"10\" height=\"10\" fill=\"%s\"/><text x=\"281\" y=\"21\">"
                "compressed (%.2f bits/weight)</text>\n<text x=\"520\" y=\"21\" fill=\"#555\">error bars: ±1 "
                "standard error</text>\n",
                colors[0], bx[0], colors[1], bx[1]);
  s += buf;
  for (int i = 0; i < n; ++i) {
    const TaskComparison& t = r.tasks[static_cast<size_t>(i)];
    const int ox = (i % cols) * pw, oy = legend_h + (i / cols) * ph;
    const int x0 = ox + ml, x1 = ox + pw - mr, y0 = oy + ph - mb, y1 = oy + mt;  // plot box (y0 bottom)
    const TaskScore pts[2] = {t.defined_for_original ? t.original : TaskScore{0, 0}, t.compressed};
    double lo = std::min(pts[0].value - pts[0].stderr_, pts[1].value - pts[1].stderr_);
    double hi = std::max(pts[0].value + pts[0].stderr_, pts[1].value + pts[1].stderr_);
    const double pad = hi > lo ? 0.15 * (hi - lo) : std::max(0.05 * std::abs(hi), 0.05);
    lo -= pad;
    hi += pad;
    if (lo < 0 && pts[0].value >= 0 && pts[1].value >= 0) lo = 0;  // scores here are never negative
    std::vector<double> yt = nice_ticks(lo, hi, 4);
    const double ystep = yt.size() > 1 ? yt[1] - yt[0] : std::abs(hi - lo);
    auto X = [&](double v) { return x0 + (x1 - x0) * v / xmax; };
    auto Y = [&](double v) { return y0 - (y0 - y1) * (v - lo) / (hi - lo); };
    std::snprintf(buf, sizeof buf,
                  "<g><text x=\"%d\" y=\"%d\" text-anchor=\"middle\" font-weight=\"bold\">%s</text>\n"
                  "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" stroke=\"#333\"/>\n",
                  ox + pw / 2, oy + 18,
                  xml_escape(t.task + " (" + t.metric + (t.higher_is_better ? ", higher is better)" : ", lower is better)"))
                      .c_str(),
                  x0, y1, x1 - x0, y0 - y1);
    s += buf;
    for (double v : xt) {
      std::snprintf(buf, sizeof buf,
                    "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#333\"/><text x=\"%.1f\" y=\"%d\" "
                    "text-anchor=\"middle\">%s</text>\n",
                    X(v), y0, X(v), y0 + 4, X(v), y0 + 16, tick_label(v, xt.size() > 1 ? xt[1] - xt[0] : 1).c_str());
      s += buf;
    }
    for (double v : yt) {
      std::snprintf(buf, sizeof buf,
                    "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#ddd\"/><text x=\"%d\" y=\"%.1f\" "
                    "text-anchor=\"end\">%s</text>\n",
                    x0, Y(v), x1, Y(v), x0 - 4, Y(v) + 4, tick_label(v, ystep).c_str());
      s += buf;
    }
    std::snprintf(buf, sizeof buf, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">bits per weight</text>\n",
                  (x0 + x1) / 2, y0 + 32);
    s += buf;
    std::snprintf(buf, sizeof buf, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#888\" "
                                   "stroke-dasharray=\"4 3\"/>\n",
                  X(bx[0]), Y(pts[0].value), X(bx[1]), Y(pts[1].value));
    s += buf;
    for (int m = 0; m < 2; ++m) {
      const double cx = X(bx[m]), cy = Y(pts[m].value);
      if (pts[m].stderr_ > 0) {
        std::snprintf(buf, sizeof buf,
                      "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\"/>\n", cx,
                      Y(std::max(lo, pts[m].value - pts[m].stderr_)), cx, Y(std::min(hi, pts[m].value + pts[m].stderr_)), colors[m]);
        s += buf;
      }
      if (m == 0)
        std::snprintf(buf, sizeof buf, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"5\" fill=\"%s\"><title>original: %s"
                                       "</title></circle>\n",
                      cx, cy, colors[m], fmt(pts[m].value).c_str());
      else
        std::snprintf(buf, sizeof buf, "<rect x=\"%.1f\" y=\"%.1f\" width=\"10\" height=\"10\" fill=\"%s\">"
                                       "<title>compressed: %s</title></rect>\n",
                      cx - 5, cy - 5, colors[m], fmt(pts[m].value).c_str());
      s += buf;
    }
    s += "</g>\n";
  }
  s += "</svg>\n";
  return s;
}

void write_report(const CompareReport& r, const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  UPG_CHECK(!ec, "cannot create the report folder '", dir, "': ", ec.message());
  auto write = [&](const std::string& name, const std::string& text) {
    const std::string path = (std::filesystem::path(dir) / name).string();
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f << text;
    f.close();
    UPG_CHECK(f.good(), "cannot write '", path, "'");
  };
  write("report.md", report_markdown(r));
  write("report.json", report_json(r).dump(2) + "\n");
  write("quality_vs_size.svg", report_svg(r));
}

}  // namespace upg
