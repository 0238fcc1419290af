#include "eval/tasks.h"

#include <map>

#include "base/error.h"
#include "eval/arc.h"
#include "eval/glue.h"
#include "eval/hellaswag.h"
#include "eval/mmlu.h"

namespace upg {

const std::vector<McTaskInfo>& mc_tasks() {
  static const std::vector<McTaskInfo> t = [] {
    std::vector<McTaskInfo> v;
    v.push_back({"mmlu", "MMLU, 57 subjects, 5-shot (lm-eval prompt); --data DIR with dev/ and test/", "eval/mmlu", 5,
                 true, false, false, false, true});
    v.push_back({"hellaswag", "HellaSwag validation, 0-shot; --data FILE (.txt 6-line format or .jsonl, may be .bz2)",
                 "eval/hellaswag/hellaswag_val_full.txt.bz2", 0, false, true, false, false, false});
    v.push_back({"arc_challenge", "ARC-Challenge test, 0-shot; --data FILE.jsonl",
                 "eval/arc/ARC-Challenge-Test.jsonl", 0, false, true, false, false, false});
    for (const auto& g : glue_tasks())
      v.push_back({g.name, "GLUE " + g.glue_dir + " dev, 0-shot; --data dev.tsv or the GLUE folder",
                   "eval/glue/" + g.glue_dir + "/dev.tsv", 0, false, false, g.f1, g.mcc, false});
    return v;
  }();
  return t;
}

const McTaskInfo& find_mc_task(const std::string& name) {
  std::string known;
  for (const auto& t : mc_tasks()) {
    if (t.name == name) return t;
    known += (known.empty() ? "" : ", ") + t.name;
  }
  throw Error(str_cat("unknown evaluation task '", name, "' (known: ppl, kld, humaneval, ", known, ")"));
}

std::vector<McItem> load_mc_task(const McTaskInfo& task, const std::string& data_path, int shots, int limit) {
  if (shots < 0) shots = task.default_shots;
  UPG_CHECK(task.takes_shots || shots == 0, task.name, " is evaluated 0-shot here; --shots ", shots,
            " is not supported");
  if (task.name == "mmlu") return load_mmlu(data_path, shots, limit);
  if (task.name == "hellaswag") return load_hellaswag(data_path, limit);
  if (task.name == "arc_challenge") return load_arc(data_path, limit);
  if (const GlueTask* g = find_glue_task(task.name)) return load_glue(*g, data_path, limit);
  throw Error(str_cat("no loader for task '", task.name, "'"));
}

namespace {
nlohmann::json acc_json(const Accuracy& a) {
  return {{"value", a.value}, {"stderr", a.stderr_}, {"n", a.n}, {"correct", a.correct}};
}
}  // namespace

nlohmann::json mc_summary_json(const McTaskInfo& task, const std::vector<McItemResult>& results) {
  McSummary s = summarize(results, task.f1, task.mcc);
  nlohmann::json j;
  j["n"] = static_cast<int64_t>(results.size());
  j["acc"] = acc_json(s.acc);
  if (task.acc_norm) j["acc_norm"] = acc_json(s.acc_norm);
  if (s.f1) j["f1"] = *s.f1;
  if (s.mcc) j["mcc"] = *s.mcc;
  int64_t truncated = 0;
  for (const auto& r : results) truncated += r.truncated > 0;
  if (truncated) j["truncated_items"] = truncated;
  if (task.categories) {
    nlohmann::json subj = nlohmann::json::object(), cats = nlohmann::json::object();
    std::map<std::string, std::vector<Accuracy>> by_cat;
    std::map<std::string, std::pair<int64_t, int64_t>> pooled;  // category -> (correct, n)
    std::vector<Accuracy> all;
    for (const auto& [name, a] : s.groups) {
      subj[name] = acc_json(a);
      std::string c = mmlu_category(name);
      if (c.empty()) c = "unknown";
      by_cat[c].push_back(a);
      pooled[c].first += a.correct;
      pooled[c].second += a.n;
      all.push_back(a);
    }
    for (const auto& [c, v] : by_cat) {
      cats[c] = {{"macro", acc_json(macro_average(v))},
                 {"micro", acc_json(accuracy(pooled[c].first, pooled[c].second))},
                 {"subjects", static_cast<int64_t>(v.size())}};
    }
    j["subjects"] = subj;
    j["categories"] = cats;
    j["macro"] = acc_json(macro_average(all));
    j["micro"] = acc_json(s.acc);
  }
  return j;
}

}  // namespace upg
