#include "eval/eval_runs.h"

#include <cmath>
#include <cstdio>
#include <optional>
#include <span>
#include <vector>

#include "base/error.h"
#include "eval/llama_perplexity.h"
#include "eval/perplexity.h"
#include "runtime/session.h"

namespace upg {

nlohmann::json run_ppl_eval(const Model& model, const Tokenizer& tok, const std::string& text,
                            const PplEvalOptions& o, const EvalProgress& progress) {
  UPG_CHECK(o.method == "hf" || o.method == "llama.cpp", "perplexity method must be hf or llama.cpp, got '",
            o.method, "'");
  nlohmann::json out = {{"task", "ppl"}, {"method", o.method}, {"model", o.model}, {"text", o.text_path},
                        {"ctx", o.ctx}};
  if (o.method == "hf") {
    UPG_CHECK(o.ctx >= 2, "--ctx must be at least 2, got ", o.ctx);
    std::vector<int32_t> ids = tok.encode(text, false);
    UPG_CHECK(static_cast<int64_t>(ids.size()) >= o.ctx, o.text_path, ": ", ids.size(),
              " tokens, fewer than one window of --ctx ", o.ctx);
    int64_t nwin = static_cast<int64_t>(ids.size()) / o.ctx;
    if (o.chunks >= 0) nwin = std::min(nwin, o.chunks);
    double nll = 0;
    int64_t tokens = 0, done = 0;
    Session session(model, o.ctx, std::nullopt, 0, 0, o.tp);
    for (int64_t w = 0; w < nwin; ++w) {
      // One window at a time through perplexity(), so that a caller can stop between windows.
      auto span = std::span<const int32_t>(ids).subspan(static_cast<size_t>(w * o.ctx), static_cast<size_t>(o.ctx));
      PerplexityResult r = perplexity(session, span, o.ctx);
      nll += r.total_nll;
      tokens += r.tokens;
      ++done;
      if (progress) {
        char buf[64];
        std::snprintf(buf, sizeof buf, "ppl %.4f", std::exp(nll / static_cast<double>(tokens)));
        if (!progress(done, nwin, buf)) break;
      }
    }
    const double ppl = tokens ? std::exp(nll / static_cast<double>(tokens)) : 0.0;
    out.update({{"text_tokens", ids.size()}, {"windows", done}, {"windows_total", nwin}, {"tokens", tokens},
                {"nll_mean", tokens ? nll / static_cast<double>(tokens) : 0.0}, {"ppl", ppl},
                {"complete", done == nwin}});
  } else {
    std::vector<int32_t> ids = llama_perplexity_tokens(tok, text);
    std::optional<int32_t> bos;
    if (tok.add_bos()) bos = tok.bos_id();
    LlamaWindows win = llama_windows(ids, o.ctx, bos, o.chunks);
    LlamaPerplexityResult r = llama_perplexity(model, win, [&](int64_t done, int64_t total) {
      return progress ? progress(done, total, "") : true;
    }, o.tp);
    out.update({{"text_tokens", ids.size()}, {"bos", bos ? nlohmann::json(*bos) : nlohmann::json(nullptr)},
                {"chunks", r.chunks}, {"chunks_total", win.chunks}, {"tokens", r.tokens}, {"nll_mean", r.nll_mean},
                {"nll_stderr", r.nll_stderr}, {"ppl", r.ppl}, {"ppl_err", r.ppl_err},
                {"complete", r.chunks == win.chunks}});
  }
  return out;
}

KldEval run_kld_eval(const Model& base, const Tokenizer& base_tok, const Model& model, const std::string& text,
                     const KldEvalOptions& o, const EvalProgress& progress) {
  std::vector<int32_t> ids = llama_perplexity_tokens(base_tok, text);
  std::optional<int32_t> bos;
  if (base_tok.add_bos()) bos = base_tok.bos_id();
  LlamaWindows win = llama_windows(ids, o.ctx, bos, o.chunks);
  KldEval e;
  e.chunks_total = win.chunks;
  e.result = kl_divergence(base, model, win, [&](int64_t done, int64_t total, const KldAccumulator& acc) {
    if (!progress) return true;
    KldResult partial = acc.result();
    char buf[128];
    std::snprintf(buf, sizeof buf, "KLD %.6f | same top %.2f%%", partial.kld_mean.value, 100 * partial.same_top.value);
    return progress(done, total, buf);
  }, o.tp);
  e.json = to_json(e.result);
  e.json.update({{"task", "kld"}, {"base", o.base}, {"model", o.model}, {"text", o.text_path}, {"ctx", o.ctx},
                 {"chunks_total", win.chunks}, {"complete", e.result.chunks == win.chunks}});
  return e;
}

nlohmann::json mc_eval_config(const McTaskInfo& t, const McEvalOptions& o) {
  const int shots = o.shots < 0 ? t.default_shots : o.shots;
  return {{"task", t.name}, {"model", o.model}, {"shots", shots}, {"add_bos", o.bos}, {"max_length", o.max_length}};
}

nlohmann::json run_mc_eval(const McTaskInfo& t, const Model& model, const Tokenizer& tok, const McEvalOptions& o,
                           const std::map<std::string, McItemResult>& done, const EvalHooks& hooks,
                           int64_t* resumed) {
  const int shots = o.shots < 0 ? t.default_shots : o.shots;
  const std::vector<McItem> items = load_mc_task(t, o.data, shots, o.limit);
  const nlohmann::json config = mc_eval_config(t, o);
  Session session(model, o.max_length, std::nullopt, 0, 0, o.tp);
  std::vector<McItemResult> results;  // in item order: resumed ones and new ones
  auto snapshot = [&](bool complete) {
    nlohmann::json j = {{"config", config},
                        {"data", o.data},
                        {"limit", o.limit},
                        {"items_total", items.size()},
                        {"complete", complete},
                        {"summary", mc_summary_json(t, results)}};
    nlohmann::json arr = nlohmann::json::array();
    for (const auto& r : results) arr.push_back(to_json(r));
    j["items"] = std::move(arr);
    return j;
  };
  int64_t correct = 0, n_resumed = 0;
  for (const auto& item : items) {
    if (auto it = done.find(item.id); it != done.end()) {
      results.push_back(it->second);
      ++n_resumed;
    } else {
      results.push_back(score_item(session, tok, item, o.bos));
    }
    correct += results.back().pred == results.back().gold;
    if (hooks.checkpoint) hooks.checkpoint([&] { return snapshot(false); });
    if (hooks.progress) {
      char buf[96];
      std::snprintf(buf, sizeof buf, "acc %.4f", static_cast<double>(correct) / static_cast<double>(results.size()));
      if (!hooks.progress(static_cast<int64_t>(results.size()), static_cast<int64_t>(items.size()), buf)) break;
    }
  }
  if (resumed) *resumed = n_resumed;
  return snapshot(results.size() == items.size());
}

nlohmann::json humaneval_eval_config(const HumanEvalRunOptions& o) {
  return {{"task", "humaneval"},           {"model", o.model},         {"max_new_tokens", o.max_new_tokens},
          {"add_bos", o.bos},              {"max_length", o.max_length}, {"timeout", o.timeout},
          {"stop", humaneval_stop_sequences()}, {"decoding", "greedy"}};
}

nlohmann::json run_humaneval_eval(const Model& model, const Tokenizer& tok, const HumanEvalRunOptions& o,
                                  const std::map<std::string, HumanEvalItemResult>& done, const EvalHooks& hooks,
                                  const std::function<void(const SandboxIsolation&)>& on_isolation,
                                  int64_t* resumed) {
  UPG_CHECK(o.max_new_tokens > 0, "--max-new-tokens must be positive, got ", o.max_new_tokens);
  const std::vector<HumanEvalProblem> problems = load_humaneval(o.data, o.limit);
  const nlohmann::json config = humaneval_eval_config(o);
  const SandboxLimits limits = humaneval_limits(o.timeout, !o.unsafe_no_sandbox);
  const SandboxIsolation isolation = require_humaneval_sandbox(limits, o.unsafe_no_sandbox);
  if (on_isolation) on_isolation(isolation);
  Session session(model, o.max_length, std::nullopt, 0, 0, o.tp);
  const HumanEvalGenOptions gen{o.max_new_tokens, o.bos};
  std::vector<HumanEvalItemResult> results;
  auto snapshot = [&](bool complete) {
    nlohmann::json j = {{"config", config},       {"data", o.data},
                        {"limit", o.limit},       {"items_total", problems.size()},
                        {"complete", complete},   {"summary", humaneval_summary_json(results)}};
    j["isolation"] = to_json(isolation);
    nlohmann::json arr = nlohmann::json::array();
    for (const auto& r : results) arr.push_back(to_json(r));
    j["items"] = std::move(arr);
    return j;
  };
  int64_t passed = 0, n_resumed = 0;
  for (const auto& p : problems) {
    if (auto it = done.find(p.task_id); it != done.end()) {
      results.push_back(it->second);
      ++n_resumed;
    } else {
      results.push_back(run_humaneval_item(session, tok, p, gen, limits));
    }
    passed += results.back().passed;
    if (hooks.checkpoint) hooks.checkpoint([&] { return snapshot(false); });
    if (hooks.progress) {
      char buf[64];
      std::snprintf(buf, sizeof buf, "pass@1 %.4f", static_cast<double>(passed) / static_cast<double>(results.size()));
      if (!hooks.progress(static_cast<int64_t>(results.size()), static_cast<int64_t>(problems.size()), buf)) break;
    }
  }
  if (resumed) *resumed = n_resumed;
  return snapshot(results.size() == problems.size());
}

}  // namespace upg
