// ARC (AI2 Reasoning Challenge), as lm-evaluation-harness's `arc_challenge` / `arc_easy`
// (lm_eval/tasks/arc/arc_easy.yaml, 0-shot): context "Question: {question}\nAnswer:", choices
// the answer texts scored as " " + text, gold = index of answerKey among the choice labels;
// metrics acc and acc_norm.
//
// Input: the AI2 JSON-lines release (ARC-Challenge-Test.jsonl): one object per line with
// id, question.stem, question.choices[{text, label}], answerKey.
#pragma once
#include <string>
#include <vector>

#include "eval/multiple_choice.h"

namespace upg {

// The prompt for one question.
std::string arc_prompt(const std::string& question);

// Items with id = the record's "id", at most `limit` (< 0: all). Throws Error naming the file
// and line for malformed records (missing fields, answerKey not among the labels).
std::vector<McItem> load_arc(const std::string& path, int limit = -1);

}  // namespace upg
