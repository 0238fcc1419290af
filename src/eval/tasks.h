// The multiple-choice tasks `upg eval` knows: one table row per task (name, where its data is by
// default, which metrics it reports), a loader that turns its data files into McItems, and the
// summary (metrics with standard errors; for MMLU per subject, per category, macro and micro).
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "eval/multiple_choice.h"

namespace upg {

struct McTaskInfo {
  std::string name;
  std::string help;
  std::string default_data;  // relative to the shared data folder; "" = --data is required
  int default_shots = 0;
  bool takes_shots = false;  // only MMLU has few-shot examples in its data
  bool acc_norm = false, f1 = false, mcc = false, categories = false;
};

const std::vector<McTaskInfo>& mc_tasks();
// Throws Error listing the known tasks when name is unknown.
const McTaskInfo& find_mc_task(const std::string& name);

// Loads the items. shots < 0 means the task's default; limit < 0 means all (for MMLU the limit
// is per subject, as lm-eval's --limit applies to each subject task).
std::vector<McItem> load_mc_task(const McTaskInfo& task, const std::string& data_path, int shots, int limit);

// {"acc": {"value", "stderr", "n"}, "acc_norm": ..., "f1": x, "mcc": x,
//  MMLU: "subjects": {name: acc}, "categories": {stem: {...macro...}}, "macro": acc, "micro": acc}.
nlohmann::json mc_summary_json(const McTaskInfo& task, const std::vector<McItemResult>& results);

}  // namespace upg
