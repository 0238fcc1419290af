// upg eval ppl MODEL --text FILE [--ctx 512] [--method hf|llama.cpp] [--chunks N]
// upg eval kld --base ORIGINAL --model COMPRESSED --text FILE [--ctx 512] [--chunks N]
//
// ppl --method hf: the method of refA's reference.json (eval/perplexity.h): the text tokenized
// whole without BOS, non-overlapping windows of ctx tokens, tokens 2..ctx of each scored.
// ppl --method llama.cpp and kld: llama-perplexity's windows (eval/llama_perplexity.h).
#include <cmath>
#include <cstdio>
#include <iostream>
#include <memory>

#include "base/error.h"
#include "cmd_eval_common.h"
#include "eval/data_files.h"
#include "eval/eval_runs.h"
#include "loaded_model.h"

namespace upg::cli {

namespace {
struct PplOptions {
  std::string model, base, text, json, method = "hf";
  int ctx = 512, threads = 0;
  std::string device = "cpu";
  int64_t chunks = -1;
  TensorParallelFlags tp;
};

std::string resolve_text(const std::string& text) {
  if (!text.empty()) return text;
  std::string d = default_data_path("text/wiki.test.raw");
  UPG_CHECK(!d.empty(), "no text given: use --text FILE (the default, ../shared/data/text/wiki.test.raw, is absent)");
  return d;
}

void run_ppl(const PplOptions& o) {
  apply_threads(o.threads);
  UPG_CHECK(o.method == "hf" || o.method == "llama.cpp", "--method must be hf or llama.cpp, got '", o.method, "'");
  const std::string text_path = resolve_text(o.text);
  const std::string text = read_data_file(text_path);
  LoadedModel lm = load_model(o.model, o.device);
  install_interrupt_handler();
  PplEvalOptions po;
  po.model = o.model;
  po.text_path = text_path;
  po.method = o.method;
  po.ctx = o.ctx;
  po.chunks = o.chunks;
  po.tp = o.tp.resolve(*lm.model->backend());
  ProgressLine bar("ppl", 0, o.method == "hf" ? "windows" : "chunks");
  const nlohmann::json out = run_ppl_eval(*lm.model, lm.tokenizer, text, po, progress_on(bar));
  bar.finish();
  const bool complete = out["complete"].get<bool>();
  if (o.method == "hf") {
    std::printf("perplexity (hf method, ctx %d): %.4f over %lld windows, %lld scored tokens%s\n", o.ctx,
                out["ppl"].get<double>(), static_cast<long long>(out["windows"].get<int64_t>()),
                static_cast<long long>(out["tokens"].get<int64_t>()), complete ? "" : " (interrupted)");
  } else {
    std::printf("Final estimate: PPL = %.4f +/- %.5f  (llama.cpp method, ctx %d, %lld chunks, %lld scored tokens%s)\n",
                out["ppl"].get<double>(), out["ppl_err"].get<double>(), o.ctx,
                static_cast<long long>(out["chunks"].get<int64_t>()),
                static_cast<long long>(out["tokens"].get<int64_t>()), complete ? "" : ", interrupted");
  }
  if (!o.json.empty()) write_json_file(o.json, out);
}

void run_kld(const PplOptions& o) {
  apply_threads(o.threads);
  const std::string text_path = resolve_text(o.text);
  const std::string text = read_data_file(text_path);
  LoadedModel base = load_model(o.base, o.device);
  LoadedModel model = load_model(o.model, o.device);
  install_interrupt_handler();
  KldEvalOptions ko;
  ko.base = o.base;
  ko.model = o.model;
  ko.text_path = text_path;
  ko.ctx = o.ctx;
  ko.chunks = o.chunks;
  ko.tp = o.tp.resolve(*model.model->backend());
  ProgressLine bar("kld", 0, "chunks");
  const KldEval e = run_kld_eval(*base.model, base.tokenizer, *model.model, text, ko, progress_on(bar));
  bar.finish();
  const KldResult& r = e.result;
  const bool complete = r.chunks == e.chunks_total;
  std::printf("KL divergence of %s from %s (llama.cpp windows, ctx %d, %lld chunks, %lld tokens%s)\n",
              o.model.c_str(), o.base.c_str(), o.ctx, static_cast<long long>(r.chunks),
              static_cast<long long>(r.tokens), complete ? "" : ", interrupted");
  std::printf("Mean PPL(Q)                   : %10.6f +/- %10.6f\n", r.ppl.value, r.ppl.err);
  std::printf("Mean PPL(base)                : %10.6f +/- %10.6f\n", r.ppl_base.value, r.ppl_base.err);
  std::printf("Cor(ln(PPL(Q)), ln(PPL(base))): %6.2f%%\n", 100 * r.ln_ppl_correlation);
  std::printf("Mean ln(PPL(Q)/PPL(base))     : %10.6f +/- %10.6f\n", r.ln_ppl_ratio.value, r.ln_ppl_ratio.err);
  std::printf("Mean PPL(Q)/PPL(base)         : %10.6f +/- %10.6f\n", r.ppl_ratio.value, r.ppl_ratio.err);
  std::printf("Mean PPL(Q)-PPL(base)         : %10.6f +/- %10.6f\n", r.ppl_diff.value, r.ppl_diff.err);
  std::printf("Mean    KLD: %10.6f +/- %10.6f\n", r.kld_mean.value, r.kld_mean.err);
  std::printf("Maximum KLD: %10.6f\n99.9%%   KLD: %10.6f\n99.0%%   KLD: %10.6f\nMedian  KLD: %10.6f\n", r.kld_max,
              r.kld_p999, r.kld_p99, r.kld_median);
  std::printf("RMS Δp    : %6.3f +/- %5.3f %%\n", 100 * r.p_diff_rms.value, 100 * r.p_diff_rms.err);
  std::printf("Same top p: %6.3f +/- %5.3f %%\n", 100 * r.same_top.value, 100 * r.same_top.err);
  if (!o.json.empty()) write_json_file(o.json, e.json);
}

void add_common(CLI::App* cmd, PplOptions& o) {
  cmd->add_option("--text,--data", o.text, "Text file (default ../shared/data/text/wiki.test.raw when present)");
  cmd->add_option("-c,--ctx", o.ctx, "Window (context) length in tokens")->capture_default_str();
  cmd->add_option("--chunks,--limit", o.chunks, "Evaluate only the first N windows (default: all)");
  cmd->add_option("--json", o.json, "Write the results to this JSON file");
  add_threads_flag(cmd, o.threads);
  add_device_flag(cmd, o.device);
  add_tensor_parallel_flags(cmd, o.tp);
}
}  // namespace

void add_eval_ppl_commands(CLI::App* eval) {
  auto o = std::make_shared<PplOptions>();
  auto* ppl = eval->add_subcommand("ppl", "Perplexity of a text (hf = refA reference.json method, llama.cpp = "
                                          "llama-perplexity's second-half windows)");
  ppl->add_option("model", o->model, "Hugging Face model directory or .upg file")->required();
  ppl->add_option("--method", o->method, "hf or llama.cpp")->capture_default_str();
  add_common(ppl, *o);
  ppl->callback([o] { run_ppl(*o); });

  auto k = std::make_shared<PplOptions>();
  auto* kld = eval->add_subcommand("kld", "KL divergence of a (compressed) model from its original, llama.cpp's "
                                          "--kl-divergence statistics");
  kld->add_option("--base", k->base, "The original model (reference distribution)")->required();
  kld->add_option("--model", k->model, "The model to compare with it")->required();
  add_common(kld, *k);
  kld->callback([k] { run_kld(*k); });
}

}  // namespace upg::cli
