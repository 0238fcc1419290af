// Paired statistics (McNemar exact) on hand-made data with known values, and the compare report
// (markdown table, JSON, SVG) written from a small fake result set.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "base/error.h"
#include "base/mapped_file.h"
#include "eval/report.h"

namespace upg {
namespace {

TEST(PairedStats, BinomialTwoSidedKnownValues) {
  // Reference values: 2 * sum_{i <= min(k, n-k)} C(n, i) / 2^n, exact in Python's integers.
  EXPECT_DOUBLE_EQ(binomial_two_sided_half(0, 0), 1.0);
  EXPECT_DOUBLE_EQ(binomial_two_sided_half(0, 5), 0.0625);
  EXPECT_DOUBLE_EQ(binomial_two_sided_half(5, 5), 0.0625);
  EXPECT_NEAR(binomial_two_sided_half(10, 12), 0.03857421875, 1e-14);
  EXPECT_NEAR(binomial_two_sided_half(2, 12), 0.03857421875, 1e-14);  // symmetric
  EXPECT_NEAR(binomial_two_sided_half(60, 100), 0.05688793364098079, 1e-12);
  EXPECT_NEAR(binomial_two_sided_half(500, 1100), 0.0028195449914364275, 1e-13);
  EXPECT_DOUBLE_EQ(binomial_two_sided_half(1, 1), 1.0);
  EXPECT_DOUBLE_EQ(binomial_two_sided_half(3, 6), 1.0);
  EXPECT_THROW(binomial_two_sided_half(7, 6), Error);
}

TEST(PairedStats, McNemarCountsAndPValue) {
  // 20 items: both right on 5, only the original on 10, only the compressed on 2, neither on 3.
  std::vector<bool> a, b;
  auto add = [&](int k, bool x, bool y) {
    for (int i = 0; i < k; ++i) a.push_back(x), b.push_back(y);
  };
  add(5, true, true);
  add(10, true, false);
  add(2, false, true);
  add(3, false, false);
  PairedTest t = mcnemar_exact(a, b);
  EXPECT_EQ(t.n, 20);
  EXPECT_EQ(t.both, 5);
  EXPECT_EQ(t.only_original, 10);
  EXPECT_EQ(t.only_compressed, 2);
  EXPECT_EQ(t.neither, 3);
  EXPECT_NEAR(t.p_value, 0.03857421875, 1e-14);
  // A model against itself: no discordant pairs, p = 1.
  PairedTest same = mcnemar_exact(a, a);
  EXPECT_EQ(same.only_original + same.only_compressed, 0);
  EXPECT_DOUBLE_EQ(same.p_value, 1.0);
  EXPECT_THROW(mcnemar_exact(a, {true}), Error);
}

TEST(PairedStats, Retention) {
  TaskComparison acc{"mmlu", "acc", true};
  acc.original = {0.5, 0.01};
  acc.compressed = {0.45, 0.01};
  EXPECT_DOUBLE_EQ(*acc.retention(), 0.9);
  TaskComparison ppl{"ppl", "ppl", false};
  ppl.original = {20, 0.1};
  ppl.compressed = {25, 0.1};
  EXPECT_DOUBLE_EQ(*ppl.retention(), 0.8);  // original / compressed: < 1 means worse
  TaskComparison kld{"kld", "kld", false};
  kld.defined_for_original = false;
  kld.compressed = {0.01, 0.001};
  EXPECT_FALSE(kld.retention().has_value());
  TaskComparison zero{"humaneval", "pass@1", true};
  EXPECT_DOUBLE_EQ(*zero.retention(), 1.0);  // 0 of 0: nothing lost
}

CompareReport fake_report() {
  CompareReport r;
  r.original = {"models/orig", 1000000, 800000, 400000};      // 16 bits per weight
  r.compressed = {"orig.upg", 250000, 200000, 400000};        // 4 bits per weight
  r.upg_version = "0.1.0";
  r.created = "2026-01-01T00:00:00Z";
  r.limit = 2;
  TaskComparison ppl{"ppl", "ppl", false};
  ppl.original = {20.0, 0.5};
  ppl.compressed = {22.0, 0.55};
  ppl.n = 510;
  ppl.unit = "tokens";
  r.tasks.push_back(ppl);
  TaskComparison mmlu{"mmlu", "acc", true};
  mmlu.original = {0.5, 0.05};
  mmlu.compressed = {0.4, 0.05};
  mmlu.n = 20;
  mmlu.unit = "questions";
  mmlu.paired = PairedTest{20, 5, 10, 2, 3, 0.03857421875};
  r.tasks.push_back(mmlu);
  TaskComparison kld{"kld", "kld", false};
  kld.defined_for_original = false;
  kld.compressed = {0.0123, 0.001};
  kld.n = 510;
  kld.unit = "tokens";
  kld.extra.push_back("same top token 97.000%");
  r.tasks.push_back(kld);
  r.commands = {"upg compare models/orig orig.upg --tasks ppl,mmlu,kld --limit 2 --out rep"};
  r.data_files = {"../shared/data/text/wiki.test.raw (1290590 bytes, xxh64 0123456789abcdef)"};
  return r;
}

// The markdown table row of a task (the line starting with "| task |").
std::string row_of(const std::string& md, const std::string& task) {
  std::istringstream in(md);
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("| " + task + " |", 0) == 0) return line;
  return "";
}

TEST(Report, MarkdownTableContents) {
  const std::string md = report_markdown(fake_report());
  EXPECT_EQ(row_of(md, "ppl"), "| ppl | ppl ↓ | 510 tokens | 20.0000 ± 0.5000 | 22.0000 ± 0.5500 | 0.9091 | n/a |");
  EXPECT_EQ(row_of(md, "mmlu"),
            "| mmlu | acc ↑ | 20 questions | 0.5000 ± 0.0500 | 0.4000 ± 0.0500 | 0.8000 | p = 0.0386 (only original "
            "right: 10, only compressed right: 2) |");
  EXPECT_EQ(row_of(md, "kld"), "| kld | kld ↓ | 510 tokens | 0 (by definition) | 0.0123 ± 0.0010 | n/a | n/a |");
  EXPECT_NE(md.find("| original | `models/orig` | 1.00 MB | 800.0 kB | 400000 | 16.000 |"), std::string::npos) << md;
  EXPECT_NE(md.find("| compressed | `orig.upg` | 250.0 kB | 200.0 kB | 400000 | 4.000 |"), std::string::npos) << md;
  EXPECT_NE(md.find("25.0% of the original"), std::string::npos);
  EXPECT_NE(md.find("upg compare models/orig orig.upg --tasks ppl,mmlu,kld --limit 2 --out rep"), std::string::npos);
  EXPECT_NE(md.find("wiki.test.raw (1290590 bytes"), std::string::npos);
  EXPECT_NE(md.find("- kld: same top token 97.000%"), std::string::npos);
  EXPECT_NE(md.find("--limit 2"), std::string::npos);
}

TEST(Report, JsonContents) {
  nlohmann::json j = report_json(fake_report());
  EXPECT_DOUBLE_EQ(j["models"]["original"]["bits_per_weight"].get<double>(), 16.0);
  EXPECT_DOUBLE_EQ(j["models"]["compressed"]["bits_per_weight"].get<double>(), 4.0);
  ASSERT_EQ(j["tasks"].size(), 3u);
  EXPECT_EQ(j["tasks"][1]["task"], "mmlu");
  EXPECT_DOUBLE_EQ(j["tasks"][1]["retention"].get<double>(), 0.8);
  EXPECT_EQ(j["tasks"][1]["paired_test"]["only_original_correct"], 10);
  EXPECT_DOUBLE_EQ(j["tasks"][1]["paired_test"]["p_value"].get<double>(), 0.03857421875);
  EXPECT_TRUE(j["tasks"][2]["retention"].is_null());
  EXPECT_TRUE(j["tasks"][2]["original"]["value"].is_null());
  EXPECT_FALSE(j["tasks"][0].contains("paired_test"));
  EXPECT_EQ(j["limit"], 2);
}

TEST(Report, SvgIsWellFormedAndPlacesThePoints) {
  const std::string svg = report_svg(fake_report());
  EXPECT_EQ(svg.rfind("<svg xmlns=\"http://www.w3.org/2000/svg\"", 0), 0u);
  EXPECT_NE(svg.find("</svg>"), std::string::npos);
  // One panel per task, each with one original point (circle) and one compressed point (rect).
  auto count = [&](const std::string& s) {
    size_t n = 0;
    for (size_t p = svg.find(s); p != std::string::npos; p = svg.find(s, p + 1)) ++n;
    return n;
  };
  EXPECT_EQ(count("<g>"), 3u);
  EXPECT_EQ(count("</g>"), 3u);
  EXPECT_EQ(count("<title>original: "), 3u);
  EXPECT_EQ(count("<title>compressed: "), 3u);
  EXPECT_NE(svg.find("mmlu (acc, higher is better)"), std::string::npos);
  EXPECT_NE(svg.find("ppl (ppl, lower is better)"), std::string::npos);
  EXPECT_NE(svg.find("original (16.00 bits/weight)"), std::string::npos);
  EXPECT_NE(svg.find("compressed (4.00 bits/weight)"), std::string::npos);
  // Balanced tags of the elements used (every <text> closed).
  EXPECT_EQ(count("<text"), count("</text>"));
  // The x axis runs 0 .. 20 (ticks 0, 5, ..., 20 for 16 bits); the original at 16 lies right of
  // the compressed at 4 in the first panel: x = 62 + (300 - 62 - 16) * bpw / 20.
  EXPECT_NE(svg.find("<circle cx=\"239.6\""), std::string::npos) << svg.substr(0, 3000);
  EXPECT_NE(svg.find("<rect x=\"101.4\""), std::string::npos);  // 62 + 222 * 4 / 20 - 5
}

TEST(Report, WriteReportCreatesTheThreeFiles) {
  const auto dir = std::filesystem::temp_directory_path() / "upg_report_test";
  std::filesystem::remove_all(dir);
  write_report(fake_report(), (dir / "sub").string());
  EXPECT_EQ(read_text_file((dir / "sub" / "report.md").string()), report_markdown(fake_report()));
  auto j = nlohmann::json::parse(read_text_file((dir / "sub" / "report.json").string()));
  EXPECT_EQ(j["tasks"].size(), 3u);
  EXPECT_EQ(read_text_file((dir / "sub" / "quality_vs_size.svg").string()), report_svg(fake_report()));
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace upg
