// upg eval {mmlu|hellaswag|arc_challenge|sst2|rte|mrpc|qnli|cola} MODEL [--limit N] [--shots K]
//     [--threads T] [--json OUT] [--resume] [--data PATH] [--bos] [--max-length L]
//
// Scores every item by log-likelihood (eval/multiple_choice.h), shows a progress line with the
// running accuracy, and keeps --json up to date while it runs (every few seconds, and on Ctrl-C),
// so that an interrupted run keeps its results and --resume continues it.
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <map>
#include <memory>
#include <set>

#include "base/error.h"
#include "base/mapped_file.h"
#include "cmd_eval_common.h"
#include "eval/eval_runs.h"
#include "eval/tasks.h"
#include "loaded_model.h"

namespace upg::cli {

namespace {
struct TaskOptions {
  std::string model, json, data;
  int limit = -1, shots = -1, threads = 0, max_length = 0;
  std::string device = "cpu";
  bool resume = false, bos = false;
  TensorParallelFlags tp;
};

std::map<std::string, McItemResult> load_resume(const std::string& path, const nlohmann::json& config) {
  std::map<std::string, McItemResult> done;
  if (!std::filesystem::exists(path)) return done;
  nlohmann::json j = nlohmann::json::parse(read_text_file(path), nullptr, false);
  UPG_CHECK(j.is_object() && j.contains("config") && j.contains("items") && j["items"].is_array(), "--resume: '", path,
            "' is not a results file written by upg eval");
  for (const auto& [k, v] : config.items())
    UPG_CHECK(j["config"].contains(k) && j["config"][k] == v, "--resume: '", path, "' was written with ", k, " = ",
              j["config"].value(k, nlohmann::json()).dump(), ", this run has ", v.dump());
  for (const auto& item : j["items"]) {
    McItemResult r = mc_item_result_from_json(item);
    done[r.id] = std::move(r);
  }
  return done;
}

void print_summary(const McTaskInfo& t, const nlohmann::json& s, bool complete) {
  auto line = [](const char* name, const nlohmann::json& a) {
    std::printf("%-40s %7.4f +/- %.4f  (n = %lld)\n", name, a["value"].get<double>(), a["stderr"].get<double>(),
                static_cast<long long>(a["n"].get<int64_t>()));
  };
  std::printf("%s%s\n", t.name.c_str(), complete ? "" : " (interrupted: partial results)");
  if (t.categories) {
    for (const auto& [name, a] : s["subjects"].items()) line(("  " + name).c_str(), a);
    for (const auto& [name, c] : s["categories"].items()) line(("category " + name + " (macro)").c_str(), c["macro"]);
    line("mmlu macro average (subjects)", s["macro"]);
    line("mmlu micro average (questions)", s["micro"]);
  } else {
    line("acc", s["acc"]);
    if (s.contains("acc_norm")) line("acc_norm", s["acc_norm"]);
  }
  if (s.contains("f1")) std::printf("%-40s %7.4f\n", "f1", s["f1"].get<double>());
  if (s.contains("mcc")) std::printf("%-40s %7.4f\n", "mcc", s["mcc"].get<double>());
  if (s.contains("truncated_items"))
    std::printf("note: %lld items were left-truncated to fit the model's context\n",
                static_cast<long long>(s["truncated_items"].get<int64_t>()));
}

McEvalOptions eval_options(const TaskOptions& o, const std::string& data) {
  McEvalOptions e;
  e.model = o.model;
  e.data = data;
  e.limit = o.limit;
  e.shots = o.shots;
  e.bos = o.bos;
  e.max_length = o.max_length;
  return e;
}

void run_task(const McTaskInfo& t, const TaskOptions& o) {
  apply_threads(o.threads);
  UPG_CHECK(!o.resume || !o.json.empty(), "--resume needs --json FILE (the results file to continue)");
  std::string data = o.data.empty() ? default_data_path(t.default_data) : o.data;
  UPG_CHECK(!data.empty(), t.name, ": no data: give --data PATH (the default ",
            t.default_data.empty() ? "location" : "../shared/data/" + t.default_data, " is absent)");
  McEvalOptions eo = eval_options(o, data);
  std::map<std::string, McItemResult> done;
  if (o.resume) done = load_resume(o.json, mc_eval_config(t, eo));
  LoadedModel lm = load_model(o.model, o.device);
  eo.tp = o.tp.resolve(*lm.model->backend());
  install_interrupt_handler();

  ProgressLine bar(t.name, 0);
  const EvalHooks hooks = eval_hooks(bar, o.json);
  int64_t resumed = 0;
  const nlohmann::json final_json = run_mc_eval(t, *lm.model, lm.tokenizer, eo, done, hooks, &resumed);
  bar.finish();
  const bool complete = final_json["complete"].get<bool>();
  if (!o.json.empty()) write_json_file(o.json, final_json);
  if (resumed) std::fprintf(stderr, "resumed %lld items from %s\n", static_cast<long long>(resumed), o.json.c_str());
  print_summary(t, final_json["summary"], complete);
  if (!complete)
    throw Error(str_cat("interrupted after ", final_json["items"].size(), " of ",
                        final_json["items_total"].get<int64_t>(), " items",
                        o.json.empty() ? "" : "; results so far are in " + o.json + " (continue with --resume)"));
}
}  // namespace

void add_eval_task_commands(CLI::App* eval) {
  for (const auto& t : mc_tasks()) {
    auto o = std::make_shared<TaskOptions>();
    auto* cmd = eval->add_subcommand(t.name, t.help);
    cmd->add_option("model", o->model, "Hugging Face model directory or .upg file")->required();
    cmd->add_option("--data", o->data,
                    t.default_data.empty() ? std::string("Data file or folder")
                                           : "Data file or folder (default ../shared/data/" + t.default_data + ")");
    cmd->add_option("--limit", o->limit,
                    t.categories ? "Questions per subject at most (default: all)" : "Items at most (default: all)");
    cmd->add_option("--shots", o->shots, str_cat("Few-shot examples (default ", t.default_shots, ")"));
    cmd->add_option("--json", o->json, "Write results (summary and per-item scores) to this JSON file as they come");
    cmd->add_flag("--resume", o->resume, "Continue the run saved in --json: items already there are not re-scored");
    cmd->add_flag("--bos", o->bos, "Add the tokenizer's special tokens (BOS) to prompts (lm-eval's add_bos_token)");
    cmd->add_option("--max-length", o->max_length,
                    "Context positions (0 = the model's maximum); longer prompts are left-truncated")
        ->check(CLI::NonNegativeNumber);
    add_threads_flag(cmd, o->threads);
  add_device_flag(cmd, o->device);
  add_tensor_parallel_flags(cmd, o->tp);
    const McTaskInfo* tp = &t;
    cmd->callback([tp, o] { run_task(*tp, *o); });
  }
}

}  // namespace upg::cli
