// GLUE classification tasks with lm-evaluation-harness's prompts (lm_eval/tasks/glue/*/default.yaml,
// 0-shot, choices scored as " " + choice), read from the original GLUE dev.tsv files:
//
//  task  file columns (header)                                   prompt                                         choices (label 0, 1)    metrics
//  sst2  sentence, label (0/1)                                  "{sentence}\nQuestion: Is this sentence positive or negative?\nAnswer:"  negative, positive  acc
//  rte   index, sentence1, sentence2, label (entailment/not_e.) "{sentence1}\nQuestion: {sentence2} True or False?\nAnswer:"           True, False         acc
//  mrpc  Quality, #1 ID, #2 ID, #1 String, #2 String            "Sentence 1: {s1}\nSentence 2: {s2}\nQuestion: Do both sentences mean the same thing?\nAnswer:"  no, yes  acc, f1
//  qnli  index, question, sentence, label (entailment/not_e.)   "{question}\n{sentence}\nQuestion: Does this response answer the question?\nAnswer:"  yes, no  acc
//  cola  (no header) source, label (0/1), author mark, sentence "{sentence}\nQuestion: Does this sentence make sense?\nAnswer:"           no, yes             mcc
//
// Labels follow the Hugging Face `glue` dataset: entailment = 0, not_entailment = 1; MRPC Quality
// 1 = paraphrase; SST-2 1 = positive; CoLA 1 = acceptable.
#pragma once
#include <string>
#include <vector>

#include "eval/multiple_choice.h"

namespace upg {

struct GlueTask {
  std::string name;                 // "sst2", ...
  std::string glue_dir;             // folder name in the GLUE download ("SST-2", ...)
  std::vector<std::string> choices; // by label
  bool f1 = false, mcc = false;
};

// The tasks above, in the order of the table.
const std::vector<GlueTask>& glue_tasks();
// nullptr when name is not a GLUE task.
const GlueTask* find_glue_task(const std::string& name);

// Items of `task` from `path`: a dev.tsv file, or a folder holding dev.tsv or {glue_dir}/dev.tsv.
// ids "{task}/{row}" (row = 0-based data row). Throws Error naming the file, the row and the
// missing column or bad label.
std::vector<McItem> load_glue(const GlueTask& task, const std::string& path, int limit = -1);

}  // namespace upg
