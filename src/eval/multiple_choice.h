// Multiple-choice evaluation (lm-evaluation-harness output_type: multiple_choice): each item is a
// context and N choices; choice i is scored as the continuation target_delimiter + choices[i]
// (eval/loglikelihood.h). pred = argmax of the log-likelihoods; pred_norm = argmax of
// loglik / len(choice) with len in Unicode code points of the choice text without the delimiter
// (Python's len(str), as lm-eval's acc_norm). Ties go to the first maximum (np.argmax).
//
// Per-item results (id, gold, pred, log-likelihoods, token counts, greedy flags) are kept and
// serialised so that two models can be compared item by item later.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "eval/metrics.h"
#include "runtime/session.h"
#include "tokenizer/tokenizer.h"

namespace upg {

struct McItem {
  std::string id;        // unique within the task, stable across runs (used by --resume)
  std::string group;     // MMLU subject, "" when the task has no groups
  std::string context;   // the whole prompt: description + few-shot examples + the question
  std::vector<std::string> choices;  // choice texts without the target delimiter
  std::string delimiter = " ";       // lm-eval target_delimiter
  int gold = 0;          // index into choices
};

struct McItemResult {
  std::string id, group;
  int gold = 0, pred = 0, pred_norm = 0;
  std::vector<double> logliks;  // per choice, natural log
  std::vector<int> tokens;      // continuation tokens per choice
  std::vector<bool> greedy;     // per choice
  int context_tokens = 0;       // after any truncation
  int truncated = 0;            // context tokens dropped on the left to fit the model
};

// Scores one item (tokenization with add_special_tokens = add_bos; see encode_request).
McItemResult score_item(Session& session, const Tokenizer& tok, const McItem& item, bool add_bos = false);

// np.argmax: index of the first maximum. Throws Error on an empty list.
int argmax_first(const std::vector<double>& v);

struct McSummary {
  Accuracy acc, acc_norm;
  std::optional<double> f1, mcc;     // binary tasks that report them (label 1 = positive)
  std::map<std::string, Accuracy> groups;  // per McItem::group (acc), when groups are used
};

// Aggregates results. with_f1 / with_mcc add those metrics over (gold, pred).
McSummary summarize(const std::vector<McItemResult>& results, bool with_f1 = false, bool with_mcc = false);

nlohmann::json to_json(const McItemResult& r);
// Throws Error naming the field when j is not a McItemResult written by to_json.
McItemResult mc_item_result_from_json(const nlohmann::json& j);

}  // namespace upg
