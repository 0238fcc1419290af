// MMLU (Hendrycks et al.), as lm-evaluation-harness's `mmlu` task (lm_eval/tasks/mmlu/default):
// 57 subjects, each scored on its test split with the first K dev questions as few-shot examples
// (fewshot sampler first_n, K = 5 by default). Prompt, byte for byte:
//
//   "The following are multiple choice questions (with answers) about {subject, _ -> space}.\n\n"
//   + for each example: "{question.strip()}\nA. {c0}\nB. {c1}\nC. {c2}\nD. {c3}\nAnswer: {letter}\n\n"
//   + "{question.strip()}\nA. {c0}\nB. {c1}\nC. {c2}\nD. {c3}\nAnswer:"
//
// and the choices " A", " B", " C", " D" are scored by log-likelihood (metric: acc).
//
// Data layout (the CSVs of cais/mmlu): DIR/test/{subject}_test.csv and DIR/dev/{subject}_dev.csv,
// header `question,choice0,choice1,choice2,choice3,answer`, answer 0-3.
#pragma once
#include <string>
#include <vector>

#include "eval/multiple_choice.h"

namespace upg {

struct MmluQuestion {
  std::string question;
  std::string choices[4];
  int answer = 0;  // 0..3
};

// "stem", "humanities", "social_sciences" or "other" (lm-eval's groups); "" for an unknown subject.
std::string mmlu_category(const std::string& subject);
// The 57 subjects in alphabetical order.
const std::vector<std::string>& mmlu_subjects();

// The full prompt for `q` with the given few-shot examples (all of them are used).
std::string mmlu_prompt(const std::string& subject, const std::vector<MmluQuestion>& shots, const MmluQuestion& q);

// Reads one MMLU CSV file. Throws Error naming the file and row on a malformed file.
std::vector<MmluQuestion> read_mmlu_csv(const std::string& path);

// Items of every subject found in dir/test (ids "{subject}/{row}", group = subject), at most
// `limit_per_subject` per subject (< 0: all), each with the first `shots` dev questions.
// Throws Error when dir has no test CSVs, a dev file is missing or has fewer than `shots` rows.
std::vector<McItem> load_mmlu(const std::string& dir, int shots, int limit_per_subject = -1);

}  // namespace upg
