#include "eval/humaneval.h"

#include <zlib.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>

#include "base/error.h"
#include "base/mapped_file.h"
#include "eval/data_files.h"
#include "runtime/generate.h"
#include "runtime/session.h"
#include "tokenizer/tokenizer.h"

namespace upg {

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Parses one JSON object per non-empty line; `what` names the file in errors.
std::vector<nlohmann::json> parse_jsonl(const std::string& text, const std::string& what) {
  std::vector<nlohmann::json> out;
  size_t line_no = 0;
  for (const std::string& line : split_lines(text)) {
    ++line_no;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    UPG_CHECK(!j.is_discarded() && j.is_object(), what, ":", line_no, ": not a JSON object (expected one per line)");
    out.push_back(std::move(j));
  }
  UPG_CHECK(!out.empty(), what, ": no JSON lines found");
  return out;
}

std::string string_field(const nlohmann::json& j, const char* key, const std::string& what, size_t index) {
  auto it = j.find(key);
  UPG_CHECK(it != j.end() && it->is_string(), what, ": record ", index + 1, " has no string field \"", key, "\"");
  return it->get<std::string>();
}

}  // namespace

std::string read_maybe_gzip(const std::string& path) {
  UPG_CHECK(std::filesystem::is_regular_file(path), "'", path, "' does not exist or is not a file");
  if (!ends_with(path, ".gz")) return read_text_file(path, kMaxDataFileBytes);
  {
    // zlib would read non-gzip bytes through unchanged ("transparent" mode): check the magic.
    std::ifstream in(path, std::ios::binary);
    unsigned char magic[2] = {0, 0};
    in.read(reinterpret_cast<char*>(magic), 2);
    UPG_CHECK(in.gcount() == 2 && magic[0] == 0x1f && magic[1] == 0x8b, "'", path,
              "' is not gzip data (the name ends in .gz but the file does not start with 1f 8b)");
  }
  gzFile f = gzopen(path.c_str(), "rb");
  UPG_CHECK(f != nullptr, "cannot open '", path, "'");
  std::string out;
  char buf[1 << 16];
  for (;;) {
    int n = gzread(f, buf, sizeof buf);
    if (n < 0) {
      int errnum = 0;
      std::string msg = gzerror(f, &errnum);
      gzclose(f);
      throw Error(str_cat("'", path, "': corrupt gzip data (", msg, ")"));
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
    if (out.size() > kMaxDataFileBytes) {
      gzclose(f);
      check_input_size(str_cat("'", path, "' (decompressed)"), out.size(), kMaxDataFileBytes);
    }
  }
  // gzread returns 0 both at the end and on a truncated stream; gzclose_r reports the latter.
  const int rc = gzclose_r(f);
  UPG_CHECK(rc == Z_OK, "'", path, "': truncated or corrupt gzip data (zlib error ", rc, ")");
  return out;
}

std::vector<HumanEvalProblem> load_humaneval(const std::string& path, int limit) {
  std::vector<nlohmann::json> rows = parse_jsonl(read_maybe_gzip(path), path);
  std::vector<HumanEvalProblem> out;
  for (size_t i = 0; i < rows.size(); ++i) {
    if (limit >= 0 && static_cast<int>(out.size()) >= limit) break;
    HumanEvalProblem p;
    p.task_id = string_field(rows[i], "task_id", path, i);
    p.prompt = string_field(rows[i], "prompt", path, i);
    p.test = string_field(rows[i], "test", path, i);
    p.entry_point = string_field(rows[i], "entry_point", path, i);
    p.canonical_solution = rows[i].value("canonical_solution", "");
    UPG_CHECK(!p.entry_point.empty(), path, ": record ", i + 1, " (", p.task_id, ") has an empty entry_point");
    out.push_back(std::move(p));
  }
  return out;
}

std::vector<HumanEvalSample> load_humaneval_samples(const std::string& path) {
  std::vector<nlohmann::json> rows = parse_jsonl(read_maybe_gzip(path), path);
  std::vector<HumanEvalSample> out;
  for (size_t i = 0; i < rows.size(); ++i)
    out.push_back({string_field(rows[i], "task_id", path, i), string_field(rows[i], "completion", path, i)});
  return out;
}

const std::vector<std::string>& humaneval_stop_sequences() {
  static const std::vector<std::string> s = {"\nclass", "\ndef", "\n#", "\nif", "\nprint"};
  return s;
}

std::string truncate_at_stop(const std::string& text, const std::vector<std::string>& stops) {
  size_t cut = text.size();
  for (const auto& s : stops)
    if (size_t p = text.find(s); p != std::string::npos) cut = std::min(cut, p);
  return text.substr(0, cut);
}

std::string humaneval_program(const HumanEvalProblem& p, const std::string& completion) {
  return p.prompt + completion + "\n" + p.test + "\n" + "check(" + p.entry_point + ")";
}

SandboxLimits humaneval_limits(double timeout_seconds, bool require_complete_sandbox) {
  UPG_CHECK(timeout_seconds > 0, "the test timeout must be positive, got ", timeout_seconds);
  SandboxLimits l;
  l.wall_seconds = timeout_seconds;
  l.cpu_seconds = static_cast<int>(std::ceil(timeout_seconds)) + 1;
  l.require_complete = require_complete_sandbox;
  return l;
}

SandboxIsolation require_humaneval_sandbox(const SandboxLimits& limits, bool unsafe_no_sandbox) {
  SandboxResult probe = probe_sandbox(limits);
  if (probe.isolation.complete() || unsafe_no_sandbox) return std::move(probe.isolation);
  std::string why;
  for (const std::string& n : probe.isolation.notes) why += "\n  " + n;
  if (probe.setup_failed) why += "\n  probe: " + probe.describe();
  throw Error(str_cat("humaneval: refusing to run model-written programs: the sandbox cannot be fully set up on "
                      "this system:", why,
                      "\n(--unsafe-no-sandbox runs them anyway, with only the isolation that took effect)"));
}

HumanEvalCheck check_completion(const HumanEvalProblem& p, const std::string& completion, const SandboxLimits& limits,
                                const std::string& python) {
  SandboxResult r = run_python_sandboxed(humaneval_program(p, completion), limits, python);
  HumanEvalCheck c;
  c.passed = r.passed();
  c.result = c.passed ? "passed" : r.timed_out ? r.describe() : "failed: " + r.describe();
  c.seconds = r.wall_seconds;
  c.isolation = std::move(r.isolation);
  return c;
}

HumanEvalItemResult generate_completion(Session& session, const Tokenizer& tok, const HumanEvalProblem& p,
                                        const HumanEvalGenOptions& opt) {
  HumanEvalItemResult r;
  r.task_id = p.task_id;
  std::vector<int32_t> ids = tok.encode(p.prompt, opt.add_bos);
  r.prompt_tokens = static_cast<int>(ids.size());
  UPG_CHECK(!ids.empty(), p.task_id, ": the prompt is empty");
  UPG_CHECK(r.prompt_tokens < session.max_context(), p.task_id, ": the prompt is ", r.prompt_tokens,
            " tokens, the model's context holds ", session.max_context());
  GenerateOptions g;
  g.max_new_tokens = opt.max_new_tokens;
  g.sampling.temperature = 0;  // greedy, nothing else altering the logits
  g.sampling.top_k = 0;
  g.sampling.top_p = 1;
  g.sampling.min_p = 0;
  g.sampling.repeat_penalty = 1;
  g.stop_strings = humaneval_stop_sequences();
  session.reset();
  std::string text;
  GenerateStats st;
  auto t0 = std::chrono::steady_clock::now();
  generate(session, tok, ids, g, [&](const std::string& piece) {
    text += piece;
    return true;
  }, &st);
  r.generate_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.completion = truncate_at_stop(text, g.stop_strings);  // the loop already stops before them
  r.generated_tokens = st.generated_tokens;
  r.stop_reason = st.stop_reason;
  return r;
}

HumanEvalItemResult run_humaneval_item(Session& session, const Tokenizer& tok, const HumanEvalProblem& p,
                                       const HumanEvalGenOptions& opt, const SandboxLimits& limits) {
  HumanEvalItemResult r = generate_completion(session, tok, p, opt);
  HumanEvalCheck c = check_completion(p, r.completion, limits);
  r.passed = c.passed;
  r.result = c.result;
  r.test_seconds = c.seconds;
  return r;
}

nlohmann::json to_json(const HumanEvalItemResult& r) {
  return {{"task_id", r.task_id},
          {"passed", r.passed},
          {"result", r.result},
          {"completion", r.completion},
          {"prompt_tokens", r.prompt_tokens},
          {"generated_tokens", r.generated_tokens},
          {"stop_reason", r.stop_reason},
          {"generate_seconds", r.generate_seconds},
          {"test_seconds", r.test_seconds}};
}

HumanEvalItemResult humaneval_item_from_json(const nlohmann::json& j) {
  UPG_CHECK(j.is_object(), "humaneval item: not a JSON object");
  auto get = [&](const char* key) -> const nlohmann::json& {
    auto it = j.find(key);
    UPG_CHECK(it != j.end(), "humaneval item: missing field \"", key, "\"");
    return *it;
  };
  HumanEvalItemResult r;
  try {
    r.task_id = get("task_id").get<std::string>();
    r.passed = get("passed").get<bool>();
    r.result = get("result").get<std::string>();
    r.completion = get("completion").get<std::string>();
    r.prompt_tokens = get("prompt_tokens").get<int>();
    r.generated_tokens = get("generated_tokens").get<int>();
    r.stop_reason = get("stop_reason").get<std::string>();
    r.generate_seconds = get("generate_seconds").get<double>();
    r.test_seconds = get("test_seconds").get<double>();
  } catch (const nlohmann::json::exception& e) {
    throw Error(str_cat("humaneval item: a field has the wrong type: ", e.what()));
  }
  return r;
}

nlohmann::json humaneval_summary_json(const std::vector<HumanEvalItemResult>& results) {
  int64_t passed = 0, timed_out = 0;
  for (const auto& r : results) {
    passed += r.passed;
    timed_out += r.result.rfind("timed out", 0) == 0;
  }
  Accuracy a = accuracy(passed, static_cast<int64_t>(results.size()));
  return {{"n", a.n},
          {"pass@1", {{"value", a.value}, {"stderr", a.stderr_}, {"n", a.n}, {"correct", a.correct}}},
          {"timed_out", timed_out}};
}

double pass_at_k(int64_t n, int64_t c, int64_t k) {
  UPG_CHECK(n >= 1 && c >= 0 && c <= n && k >= 1, "pass_at_k: need 0 <= c <= n, n >= 1, k >= 1; got n = ", n,
            ", c = ", c, ", k = ", k);
  if (n - c < k) return 1.0;
  // 1 - prod_{i = n-c+1}^{n} (1 - k / i)
  double prod = 1.0;
  for (int64_t i = n - c + 1; i <= n; ++i) prod *= 1.0 - static_cast<double>(k) / static_cast<double>(i);
  return 1.0 - prod;
}

nlohmann::json to_json(const SandboxIsolation& iso) {
  return {{"complete", iso.complete()},
          {"pid_namespace", iso.pid_namespace},
          {"network_namespace", iso.network_namespace},
          {"mount_namespace", iso.mount_namespace},
          {"ipc_namespace", iso.ipc_namespace},
          {"uts_namespace", iso.uts_namespace},
          {"user_namespace", iso.user_namespace},
          {"readonly_root", iso.readonly_root},
          {"tmpfs", iso.tmpfs},
          {"home_hidden", iso.home_hidden},
          {"unprivileged_uid", iso.unprivileged_uid},
          {"capabilities_dropped", iso.capabilities_dropped},
          {"no_new_privs", iso.no_new_privs},
          {"seccomp", iso.seccomp},
          {"notes", iso.notes}};
}

}  // namespace upg
