// upg eval TASK ...: perplexity (ppl), KL divergence against a base model (kld) and the
// multiple-choice benchmarks (mmlu, hellaswag, arc_challenge, GLUE tasks). Each task is a CLI11
// subcommand of `eval`, defined in cmd_eval_ppl.cpp and cmd_eval_tasks.cpp.
#include "base/error.h"
#include "cmd_eval_common.h"
#include "commands.h"
#include "eval/tasks.h"

namespace upg::cli {

void add_eval_command(CLI::App& app) {
  auto* eval = app.add_subcommand("eval", "Evaluate a model: perplexity, KL divergence, multiple-choice benchmarks");
  add_eval_ppl_commands(eval);
  add_eval_task_commands(eval);
  add_eval_humaneval_command(eval);
  eval->require_subcommand(0, 1);
  // Set after the subcommands were added, so that they do not inherit it: an unknown task name
  // lands in eval's extras and gets a clear error below instead of CLI11's generic one.
  eval->allow_extras();
  eval->callback([eval] {
    if (!eval->get_subcommands().empty()) return;
    auto extras = eval->remaining();
    if (!extras.empty()) find_mc_task(extras[0]);  // throws "unknown evaluation task ... (known: ...)"
    std::string known = "ppl, kld, humaneval";
    for (const auto& t : mc_tasks()) known += ", " + t.name;
    throw Error(str_cat("give a task: upg eval TASK ... (tasks: ", known, "); see upg eval --help"));
  });
}

}  // namespace upg::cli
