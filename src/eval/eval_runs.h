// The evaluations as `upg eval` runs them, each returning the JSON object the command line writes
// with --json, so that the command line and the Python module (upg.eval) report the same fields
// from the same code. The caller loads the model and the data paths; these drivers run the loop.
//
// Progress and stopping: `progress(done, total, status)` is called after each window / item
// (status is a short running figure such as "ppl 167.4123" or "acc 0.4100", possibly ""); returning
// false stops the run after that window / item, and the result then covers what was done with
// "complete": false.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "eval/humaneval.h"
#include "eval/kl_divergence.h"
#include "eval/tasks.h"
#include "runtime/model.h"
#include "runtime/tensor_parallel.h"
#include "tokenizer/tokenizer.h"

namespace upg {

using EvalProgress = std::function<bool(int64_t done, int64_t total, const std::string& status)>;

// Hooks of the item-by-item evaluations (multiple choice, HumanEval).
struct EvalHooks {
  EvalProgress progress;
  // Called after each item with a function that builds the results so far (as the final JSON, with
  // "complete": false); the command line uses it to save a partial file every few seconds.
  std::function<void(const std::function<nlohmann::json()>& snapshot)> checkpoint;
};

// ---- perplexity (`upg eval ppl`) ----
struct PplEvalOptions {
  std::string model;      // what the JSON names as "model" (the path given)
  std::string text_path;  // what the JSON names as "text"
  std::string method = "hf";  // "hf" (eval/perplexity.h) or "llama.cpp" (eval/llama_perplexity.h)
  int ctx = 512;
  int64_t chunks = -1;    // windows at most (-1: all)
  TensorParallelOptions tp;  // of the Session (the default: one Engine)
};
// {"task": "ppl", "method", "model", "text", "ctx", "text_tokens", "tokens", "nll_mean", "ppl",
//  "complete", hf: "windows", "windows_total"; llama.cpp: "bos", "chunks", "chunks_total",
//  "nll_stderr", "ppl_err"}. Throws Error on an unknown method, ctx < 2 (hf) or a text shorter than
// one window (hf) / two windows (llama.cpp).
nlohmann::json run_ppl_eval(const Model& model, const Tokenizer& tok, const std::string& text,
                            const PplEvalOptions& o, const EvalProgress& progress = nullptr);

// ---- KL divergence (`upg eval kld`) ----
struct KldEvalOptions {
  std::string base, model, text_path;  // labels for the JSON
  int ctx = 512;
  int64_t chunks = -1;
  TensorParallelOptions tp;  // of both Sessions
};
struct KldEval {
  KldResult result;
  int64_t chunks_total = 0;
  nlohmann::json json;  // to_json(result) + "task": "kld", "base", "model", "text", "ctx", "chunks_total", "complete"
};
// The text is tokenized with the base model's tokenizer; status is "KLD x | same top y%".
KldEval run_kld_eval(const Model& base, const Tokenizer& base_tok, const Model& model, const std::string& text,
                     const KldEvalOptions& o, const EvalProgress& progress = nullptr);

// ---- multiple-choice tasks (`upg eval mmlu|hellaswag|arc_challenge|<glue task>`) ----
struct McEvalOptions {
  std::string model;  // label for the JSON
  std::string data;   // data file or folder
  int limit = -1;     // items at most (MMLU: per subject); -1 = all
  int shots = -1;     // -1 = the task's default
  bool bos = false;   // add the tokenizer's special tokens to prompts
  int max_length = 0; // context positions (0 = the model's maximum)
  TensorParallelOptions tp;  // of the Session
};
// {"task", "model", "shots", "add_bos", "max_length"}: what a resumed file must share with the run.
nlohmann::json mc_eval_config(const McTaskInfo& task, const McEvalOptions& o);
// {"config", "data", "limit", "items_total", "complete", "summary" (mc_summary_json), "items"}.
// Items whose id is in `done` (a resumed file) are not scored again; *resumed counts them.
nlohmann::json run_mc_eval(const McTaskInfo& task, const Model& model, const Tokenizer& tok, const McEvalOptions& o,
                           const std::map<std::string, McItemResult>& done = {}, const EvalHooks& hooks = {},
                           int64_t* resumed = nullptr);

// ---- HumanEval, generating (`upg eval humaneval MODEL`) ----
struct HumanEvalRunOptions {
  std::string model;  // label for the JSON
  std::string data;   // HumanEval .jsonl or .jsonl.gz
  int limit = -1, max_length = 0, max_new_tokens = 512;
  double timeout = 3.0;
  bool bos = false;
  bool unsafe_no_sandbox = false;  // run the programs even when the sandbox is incomplete
  TensorParallelOptions tp;  // of the Session
};
// {"task": "humaneval", "model", "max_new_tokens", "add_bos", "max_length", "timeout", "stop", "decoding"}.
nlohmann::json humaneval_eval_config(const HumanEvalRunOptions& o);
// {"config", "data", "limit", "items_total", "complete", "summary" (humaneval_summary_json),
//  "isolation" (what the sandbox achieves: require_humaneval_sandbox, probed before the first
// problem), "items"}. Throws Error before generating anything when the sandbox is incomplete and
// o.unsafe_no_sandbox is off. on_isolation (optional) receives the probe's isolation.
nlohmann::json run_humaneval_eval(const Model& model, const Tokenizer& tok, const HumanEvalRunOptions& o,
                                  const std::map<std::string, HumanEvalItemResult>& done = {},
                                  const EvalHooks& hooks = {},
                                  const std::function<void(const SandboxIsolation&)>& on_isolation = nullptr,
                                  int64_t* resumed = nullptr);

}  // namespace upg
