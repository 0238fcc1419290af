// upg compare ORIGINAL COMPRESSED [--tasks ppl,kld,mmlu,hellaswag,arc_challenge,humaneval]
//     [--limit N] [--out DIR] [--ctx C] [--timeout S] [--max-new-tokens T] [--threads T]
//
// Runs both models through the same tasks on the same items and writes DIR/report.md,
// DIR/report.json, DIR/quality_vs_size.svg (eval/report.h) and the per-item results of each
// model under DIR/items/. --limit N: ppl/kld windows, MMLU questions per subject, items of the
// other tasks. Each task's scores come from the same library code as `upg eval TASK`, and the
// report lists those commands, so that every number can be reproduced on its own.
#include <xxhash.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>

#include "base/error.h"
#include "cmd_eval_common.h"
#include "commands.h"
#include "eval/data_files.h"
#include "eval/humaneval.h"
#include "eval/kl_divergence.h"
#include "eval/llama_perplexity.h"
#include "eval/report.h"
#include "eval/tasks.h"
#include "loaded_model.h"

namespace upg::cli {

namespace {
namespace fs = std::filesystem;

struct CompareOptions {
  std::string original, compressed, tasks = "ppl,kld,mmlu,hellaswag,arc_challenge", out = "compare_report";
  int limit = -1, ctx = 512, threads = 0, max_new_tokens = 512;
  std::string device = "cpu";
  double timeout = 3.0;
};

std::vector<std::string> split_tasks(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string t;
  while (std::getline(ss, t, ','))
    if (!t.empty()) out.push_back(t);
  UPG_CHECK(!out.empty(), "--tasks is empty");
  return out;
}

std::string shell_quote(const std::string& s) {
  if (!s.empty() && s.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./=,:@+") ==
                        std::string::npos)
    return s;
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

uint64_t model_file_bytes(const std::string& path) {
  std::error_code ec;
  if (fs::is_regular_file(path, ec)) return fs::file_size(path, ec);
  uint64_t total = 0;
  if (fs::is_directory(path, ec))
    for (const auto& e : fs::directory_iterator(path, ec)) {
      const std::string ext = e.path().extension().string();
      if (e.is_regular_file() && (ext == ".safetensors" || ext == ".bin" || ext == ".upg")) total += e.file_size();
    }
  return total;
}

ModelInfo model_info(const std::string& path, const Model& m) {
  ModelInfo info;
  info.path = path;
  info.file_bytes = model_file_bytes(path);
  info.weight_bytes = m.weight_bytes();
  auto count = [](const WeightMatrix& w) { return static_cast<uint64_t>(w.rows()) * static_cast<uint64_t>(w.cols()); };
  uint64_t n = 0;
  m.for_each_matrix([&](const WeightMatrix& w) { n += count(w); });
  info.matrix_weights = n;
  return info;
}

// "path (N bytes, xxh64 H)" for a file; for a folder the number of files and their total size.
std::string describe_data(const std::string& path) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    uint64_t files = 0, bytes = 0;
    for (const auto& e : fs::recursive_directory_iterator(path, ec))
      if (e.is_regular_file()) ++files, bytes += e.file_size();
    return str_cat(path, " (folder: ", files, " files, ", bytes, " bytes)");
  }
  std::ifstream f(path, std::ios::binary);
  XXH64_state_t* st = XXH64_createState();
  XXH64_reset(st, 0);
  std::vector<char> buf(1 << 20);
  uint64_t bytes = 0;
  while (f) {
    f.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    const auto got = f.gcount();
    if (got <= 0) break;
    XXH64_update(st, buf.data(), static_cast<size_t>(got));
    bytes += static_cast<uint64_t>(got);
  }
  const uint64_t h = XXH64_digest(st);
  XXH64_freeState(st);
  char hex[32];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(h));
  return str_cat(path, " (", bytes, " bytes, xxh64 ", hex, ")");
}

std::string utc_now() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string resolve(const std::string& rel, const std::string& what) {
  std::string p = default_data_path(rel);
  UPG_CHECK(!p.empty(), what, ": its data ../shared/data/", rel, " is absent");
  return p;
}

struct Runner {
  const CompareOptions& o;
  LoadedModel& orig;
  LoadedModel& comp;
  CompareReport& report;
  fs::path items_dir;
  std::string upg = "upg";

  std::string limit_flag(const char* flag = "--limit") const {
    return o.limit >= 0 ? str_cat(" ", flag, " ", o.limit) : "";
  }
  std::string json_out(const std::string& task, const char* which) const {
    return shell_quote((fs::path(o.out) / "items" / (task + "." + which + ".json")).string());
  }
  void save_items(const std::string& task, const char* which, const nlohmann::json& j) const {
    write_json_file((items_dir / (task + "." + which + ".json")).string(), j);
  }

  void ppl() {
    const std::string text_path = resolve("text/wiki.test.raw", "ppl");
    report.data_files.push_back(describe_data(text_path));
    const std::string text = read_data_file(text_path);
    TaskComparison t{"ppl", "ppl", false};
    t.unit = "tokens";
    LlamaPerplexityResult res[2];
    LoadedModel* ms[2] = {&orig, &comp};
    for (int m = 0; m < 2; ++m) {
      std::vector<int32_t> ids = llama_perplexity_tokens(ms[m]->tokenizer, text);
      std::optional<int32_t> bos;
      if (ms[m]->tokenizer.add_bos()) bos = ms[m]->tokenizer.bos_id();
      LlamaWindows win = llama_windows(ids, o.ctx, bos, o.limit);
      ProgressLine bar(m ? "ppl compressed" : "ppl original", win.chunks, "windows");
      res[m] = llama_perplexity(*ms[m]->model, win, [&](int64_t done, int64_t) {
        bar.update(done);
        return !interrupted();
      });
      bar.finish();
      UPG_CHECK(!interrupted(), "interrupted");
      save_items("ppl", m ? "compressed" : "original",
                 {{"ppl", res[m].ppl}, {"ppl_err", res[m].ppl_err}, {"nll_mean", res[m].nll_mean},
                  {"chunks", res[m].chunks}, {"tokens", res[m].tokens}, {"running_ppl", res[m].running_ppl}});
    }
    t.original = {res[0].ppl, res[0].ppl_err};
    t.compressed = {res[1].ppl, res[1].ppl_err};
    t.n = res[1].tokens;
    t.extra.push_back(str_cat("llama.cpp method, ctx ", o.ctx, ", ", res[1].chunks, " windows (second halves scored)"));
    report.tasks.push_back(t);
    for (const auto& [path, which] : {std::pair{o.original, "original"}, std::pair{o.compressed, "compressed"}})
      report.commands.push_back(str_cat(upg, " eval ppl ", shell_quote(path), " --method llama.cpp --ctx ", o.ctx,
                                        limit_flag("--chunks"), " --json ", json_out("ppl", which)));
  }

  void kld() {
    const std::string text_path = resolve("text/wiki.test.raw", "kld");
    if (report.data_files.empty() || report.data_files.back().rfind(text_path, 0) != 0)
      report.data_files.push_back(describe_data(text_path));
    const std::string text = read_data_file(text_path);
    std::vector<int32_t> ids = llama_perplexity_tokens(orig.tokenizer, text);
    std::optional<int32_t> bos;
    if (orig.tokenizer.add_bos()) bos = orig.tokenizer.bos_id();
    LlamaWindows win = llama_windows(ids, o.ctx, bos, o.limit);
    ProgressLine bar("kld", win.chunks, "windows");
    KldResult r = kl_divergence(*orig.model, *comp.model, win, [&](int64_t done, int64_t, const KldAccumulator&) {
      bar.update(done);
      return !interrupted();
    });
    bar.finish();
    UPG_CHECK(!interrupted(), "interrupted");
    save_items("kld", "compressed", to_json(r));
    TaskComparison t{"kld", "kld", false};
    t.defined_for_original = false;
    t.unit = "tokens";
    t.compressed = {r.kld_mean.value, r.kld_mean.err};
    t.n = r.tokens;
    char buf[256];
    std::snprintf(buf, sizeof buf,
                  "same top token %.3f%% ± %.3f%%; PPL(compressed)/PPL(original) %.5f ± %.5f; KLD median %.6f, "
                  "99%% %.6f, max %.6f",
                  100 * r.same_top.value, 100 * r.same_top.err, r.ppl_ratio.value, r.ppl_ratio.err, r.kld_median,
                  r.kld_p99, r.kld_max);
    t.extra.push_back(buf);
    report.tasks.push_back(t);
    report.commands.push_back(str_cat(upg, " eval kld --base ", shell_quote(o.original), " --model ",
                                      shell_quote(o.compressed), " --ctx ", o.ctx, limit_flag("--chunks"), " --json ",
                                      json_out("kld", "compressed")));
  }

  void mc(const McTaskInfo& info) {
    const std::string data = resolve(info.default_data, info.name);
    report.data_files.push_back(describe_data(data));
    std::vector<McItem> items = load_mc_task(info, data, -1, o.limit);
    std::vector<McItemResult> res[2];
    LoadedModel* ms[2] = {&orig, &comp};
    for (int m = 0; m < 2; ++m) {
      Session session(*ms[m]->model, 0);
      ProgressLine bar(info.name + (m ? " compressed" : " original"), static_cast<int64_t>(items.size()));
      for (const auto& item : items) {
        UPG_CHECK(!interrupted(), "interrupted");
        res[m].push_back(score_item(session, ms[m]->tokenizer, item, false));
        bar.update(static_cast<int64_t>(res[m].size()));
      }
      bar.finish();
      nlohmann::json arr = nlohmann::json::array();
      for (const auto& r : res[m]) arr.push_back(to_json(r));
      save_items(info.name, m ? "compressed" : "original",
                 {{"summary", mc_summary_json(info, res[m])}, {"items", arr}});
    }
    std::vector<bool> ok[2];
    for (int m = 0; m < 2; ++m)
      for (const auto& r : res[m]) ok[m].push_back(r.pred == r.gold);
    McSummary s0 = summarize(res[0]), s1 = summarize(res[1]);
    TaskComparison t{info.name, "acc", true};
    t.unit = "questions";
    t.n = static_cast<int64_t>(items.size());
    t.original = {s0.acc.value, s0.acc.stderr_};
    t.compressed = {s1.acc.value, s1.acc.stderr_};
    t.paired = mcnemar_exact(ok[0], ok[1]);
    if (info.acc_norm) {
      std::vector<bool> okn[2];
      for (int m = 0; m < 2; ++m)
        for (const auto& r : res[m]) okn[m].push_back(r.pred_norm == r.gold);
      PairedTest pn = mcnemar_exact(okn[0], okn[1]);
      char buf[200];
      std::snprintf(buf, sizeof buf, "acc_norm %.4f ± %.4f (original) vs %.4f ± %.4f (compressed), McNemar p = %.4g",
                    s0.acc_norm.value, s0.acc_norm.stderr_, s1.acc_norm.value, s1.acc_norm.stderr_, pn.p_value);
      t.extra.push_back(buf);
    }
    if (info.categories) t.extra.push_back("acc over all questions (micro average); limit is per subject");
    report.tasks.push_back(t);
    for (const auto& [path, which] : {std::pair{o.original, "original"}, std::pair{o.compressed, "compressed"}})
      report.commands.push_back(str_cat(upg, " eval ", info.name, " ", shell_quote(path), limit_flag(), " --json ",
                                        json_out(info.name, which)));
  }

  void humaneval() {
    const std::string data = resolve("eval/humaneval/HumanEval.jsonl.gz", "humaneval");
    report.data_files.push_back(describe_data(data));
    std::vector<HumanEvalProblem> problems = load_humaneval(data, o.limit);
    const SandboxLimits limits = humaneval_limits(o.timeout);
    require_humaneval_sandbox(limits, /*unsafe_no_sandbox=*/false);  // refuses before any program runs
    std::vector<HumanEvalItemResult> res[2];
    LoadedModel* ms[2] = {&orig, &comp};
    for (int m = 0; m < 2; ++m) {
      Session session(*ms[m]->model, 0);
      ProgressLine bar(m ? "humaneval compressed" : "humaneval original", static_cast<int64_t>(problems.size()),
                       "problems");
      for (const auto& p : problems) {
        UPG_CHECK(!interrupted(), "interrupted");
        res[m].push_back(
            run_humaneval_item(session, ms[m]->tokenizer, p, HumanEvalGenOptions{o.max_new_tokens, false}, limits));
        bar.update(static_cast<int64_t>(res[m].size()));
      }
      bar.finish();
      nlohmann::json arr = nlohmann::json::array();
      for (const auto& r : res[m]) arr.push_back(to_json(r));
      save_items("humaneval", m ? "compressed" : "original",
                 {{"summary", humaneval_summary_json(res[m])}, {"items", arr}});
    }
    std::vector<bool> ok[2];
    int64_t passed[2] = {0, 0};
    for (int m = 0; m < 2; ++m)
      for (const auto& r : res[m]) ok[m].push_back(r.passed), passed[m] += r.passed;
    const Accuracy a0 = accuracy(passed[0], static_cast<int64_t>(problems.size()));
    const Accuracy a1 = accuracy(passed[1], static_cast<int64_t>(problems.size()));
    TaskComparison t{"humaneval", "pass@1", true};
    t.unit = "problems";
    t.n = static_cast<int64_t>(problems.size());
    t.original = {a0.value, a0.stderr_};
    t.compressed = {a1.value, a1.stderr_};
    t.paired = mcnemar_exact(ok[0], ok[1]);
    int64_t same = 0;
    for (size_t i = 0; i < problems.size(); ++i) same += res[0][i].completion == res[1][i].completion;
    t.extra.push_back(str_cat("greedy, max ", o.max_new_tokens, " new tokens, test timeout ", o.timeout, " s; identical completions: ",
                              same, " of ", problems.size()));
    report.tasks.push_back(t);
    for (const auto& [path, which] : {std::pair{o.original, "original"}, std::pair{o.compressed, "compressed"}})
      report.commands.push_back(str_cat(upg, " eval humaneval ", shell_quote(path), limit_flag(), " --timeout ",
                                        o.timeout, " --max-new-tokens ", o.max_new_tokens, " --json ", json_out("humaneval", which)));
  }
};

void run_compare(const CompareOptions& o) {
  apply_threads(o.threads);
  std::vector<std::string> tasks = split_tasks(o.tasks);
  for (const auto& t : tasks)
    if (t != "ppl" && t != "kld" && t != "humaneval") find_mc_task(t);  // throws, listing the known tasks
  UPG_CHECK(o.ctx >= 4, "--ctx must be at least 4, got ", o.ctx);
  LoadedModel orig = load_model(o.original, o.device);
  LoadedModel comp = load_model(o.compressed, o.device);
  UPG_CHECK(orig.model->config().vocab_size == comp.model->config().vocab_size, "the two models' vocabularies differ (",
            orig.model->config().vocab_size, " vs ", comp.model->config().vocab_size,
            "): they are not an original and its compressed version");
  install_interrupt_handler();
  const fs::path items_dir = fs::path(o.out) / "items";
  std::error_code ec;
  fs::create_directories(items_dir, ec);
  UPG_CHECK(!ec, "cannot create '", items_dir.string(), "': ", ec.message());

  CompareReport report;
  report.original = model_info(o.original, *orig.model);
  report.compressed = model_info(o.compressed, *comp.model);
  report.upg_version = UPG_VERSION;
  report.created = utc_now();
  report.limit = o.limit;
  report.commands.push_back(str_cat("upg compare ", shell_quote(o.original), " ", shell_quote(o.compressed),
                                    " --tasks ", o.tasks, o.limit >= 0 ? str_cat(" --limit ", o.limit) : "", " --ctx ",
                                    o.ctx, " --timeout ", o.timeout, " --max-new-tokens ", o.max_new_tokens, " --out ",
                                    shell_quote(o.out)));
  report.commands.push_back("# the same numbers, task by task:");
  Runner run{o, orig, comp, report, items_dir};
  for (const auto& t : tasks) {
    if (t == "ppl")
      run.ppl();
    else if (t == "kld")
      run.kld();
    else if (t == "humaneval")
      run.humaneval();
    else
      run.mc(find_mc_task(t));
    // Keep what is done so far on disk.
    write_report(report, o.out);
  }
  write_report(report, o.out);
  std::printf("%-16s %-8s %12s %12s %10s %10s\n", "task", "metric", "original", "compressed", "retention", "p");
  for (const auto& t : report.tasks) {
    auto ret = t.retention();
    std::printf("%-16s %-8s %12.4f %12.4f %10s %10s\n", t.task.c_str(), t.metric.c_str(), t.original.value,
                t.compressed.value, ret ? str_cat(std::round(*ret * 10000) / 10000).c_str() : "n/a",
                t.paired ? str_cat(t.paired->p_value).c_str() : "n/a");
  }
  std::printf("bits per weight: original %.3f, compressed %.3f\nreport: %s\n", report.original.bits_per_weight(),
              report.compressed.bits_per_weight(), (fs::path(o.out) / "report.md").c_str());
}
}  // namespace

void add_compare_command(CLI::App& app) {
  auto o = std::make_shared<CompareOptions>();
  auto* cmd = app.add_subcommand("compare", "Compare a compressed model with its original on the same tasks; "
                                            "writes report.md, report.json and quality_vs_size.svg");
  cmd->add_option("original", o->original, "The original model (Hugging Face directory or .upg file)")->required();
  cmd->add_option("compressed", o->compressed, "The compressed model (.upg file or directory)")->required();
  cmd->add_option("--tasks", o->tasks, "Comma-separated: ppl, kld, mmlu, hellaswag, arc_challenge, humaneval, "
                                       "sst2, rte, mrpc, ...")
      ->capture_default_str();
  cmd->add_option("--limit", o->limit,
                  "Per task at most N items (ppl/kld: windows; mmlu: questions per subject); default all");
  cmd->add_option("--out", o->out, "Report folder")->capture_default_str();
  cmd->add_option("-c,--ctx", o->ctx, "ppl/kld window length in tokens")->capture_default_str();
  cmd->add_option("--timeout", o->timeout, "humaneval: seconds per test program")->capture_default_str();
  cmd->add_option("--max-new-tokens", o->max_new_tokens, "humaneval: tokens to generate at most per problem")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  add_threads_flag(cmd, o->threads);
  add_device_flag(cmd, o->device);
  cmd->callback([o] { run_compare(*o); });
}

}  // namespace upg::cli
