// What the `upg eval` subcommands share: the progress line on stderr, Ctrl-C handling (finish
// the current item, save, stop), atomic JSON writes, and where the default data files are.
#pragma once
#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "eval/eval_runs.h"

namespace upg::cli {

// Ctrl-C: the first SIGINT sets the flag (loops finish the current item, write their results and
// stop); a second one ends the process at once.
void install_interrupt_handler();
bool interrupted();

// Writes path atomically (path.tmp, then rename), so an interrupted write never leaves half a file.
void write_json_file(const std::string& path, const nlohmann::json& j);

// <shared data>/rel when that file or folder exists, else "".
std::string default_data_path(const std::string& rel);

// "done/total  extra  rate  ETA" redrawn in place on stderr when stderr is a terminal (at most
// 5 times a second); silent otherwise.
class ProgressLine {
 public:
  ProgressLine(std::string label, int64_t total, std::string unit = "items");
  void update(int64_t done, const std::string& extra = "");
  void set_total(int64_t total) { total_ = total; }
  void finish();  // ends the line (terminal only)

 private:
  std::string label_, unit_;
  int64_t total_ = 0, start_done_ = -1;
  bool tty_ = false, drawn_ = false;
  std::chrono::steady_clock::time_point t0_, last_;
};

// The progress callback an evaluation reports to: redraws `bar` (with the total the evaluation
// gives) and asks it to stop after Ctrl-C.
EvalProgress progress_on(ProgressLine& bar);
// Hooks of an item-by-item evaluation: progress_on(bar), and the results so far written to
// json_path (when not empty) at most every 5 s. `bar` must outlive the hooks.
EvalHooks eval_hooks(ProgressLine& bar, const std::string& json_path);

// The subcommands of `upg eval`, registered on the `eval` app.
void add_eval_ppl_commands(CLI::App* eval);
void add_eval_task_commands(CLI::App* eval);
void add_eval_humaneval_command(CLI::App* eval);  // cmd_eval_humaneval.cpp

}  // namespace upg::cli
