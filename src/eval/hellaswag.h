// HellaSwag (Zellers et al.), 0-shot, as lm-evaluation-harness's `hellaswag` task
// (lm_eval/tasks/hellaswag/utils.py): context = preprocess(activity_label + ": " + ctx_a + " " +
// ctx_b.capitalize()), choices = preprocess(ending) scored as " " + choice; metrics acc and
// acc_norm (loglik / len(choice)).
//
// Two input formats (each may be bzip2-compressed, name ending ".bz2"):
//  * JSON lines (the original hellaswag_val.jsonl: activity_label, ctx_a, ctx_b, endings, label)
//    when the name contains ".jsonl": processed exactly as lm-eval does.
//  * llama.cpp's text format (klosax's hellaswag_val_full.txt, the file in shared/data/eval):
//    6 lines per task: "activity_label: ctx", gold index, 4 endings. Its text is already
//    preprocessed (the [title]/[header] markers are gone) but it holds ctx = ctx_a + " " + ctx_b
//    WITHOUT lm-eval's capitalisation of ctx_b ("... on a roof. he" where lm-eval has "He"), and
//    that split cannot be recovered from the file. lm-eval's preprocess() is applied again (it also
//    drops the few leftover "[...]" spans), so only the capitalisation of ctx_b's first letter can
//    differ from lm-eval's prompts.
#pragma once
#include <string>
#include <vector>

#include "eval/multiple_choice.h"

namespace upg {

// lm-eval's preprocess(): strip, " [title]" -> ". ", drop "[...]" spans, "  " -> " " (one pass).
std::string hellaswag_preprocess(const std::string& text);
// Python str.capitalize() for ASCII letters (first upper, rest lower); other bytes unchanged.
std::string py_capitalize(const std::string& text);

// Items ids "hellaswag/{index}" (index = position in the file), at most `limit` (< 0: all).
// Throws Error naming the file and line/record on malformed input.
std::vector<McItem> load_hellaswag(const std::string& path, int limit = -1);

}  // namespace upg
