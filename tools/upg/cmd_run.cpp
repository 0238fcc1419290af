// upg run MODEL -p PROMPT: generate a continuation, streamed to stdout as it is produced.
#include <iostream>
#include <memory>

#include "base/error.h"
#include "base/mapped_file.h"
#include "commands.h"
#include "loaded_model.h"

namespace upg::cli {

namespace {
struct RunOptions {
  std::string model;
  std::string prompt;
  std::string prompt_file;
  int threads = 0;
  std::string device = "cpu";
  int ctx = 0;
  bool no_bos = false;
  GenerationFlags gen;
  TensorParallelFlags tp;
};

void run(const RunOptions& o) {
  apply_threads(o.threads);
  UPG_CHECK(o.prompt.empty() || o.prompt_file.empty(), "give either -p or -f, not both");
  std::string prompt = o.prompt_file.empty() ? o.prompt : read_text_file(o.prompt_file);
  LoadedModel lm = load_model(o.model, o.device);
  std::vector<int32_t> ids = lm.tokenizer.encode(prompt, !o.no_bos);
  if (ids.empty() && lm.tokenizer.bos_id()) ids.push_back(*lm.tokenizer.bos_id());
  UPG_CHECK(!ids.empty(), "the prompt is empty and the model has no BOS token to start from");
  Session session(*lm.model, o.ctx, o.gen.kv(), o.gen.kv_bytes(), 0, o.tp.resolve(*lm.model->backend()));
  const GenerateOptions gen = o.gen.resolve(*lm.model);
  std::cout << prompt << std::flush;
  GenerateStats st;
  generate(session, lm.tokenizer, ids, gen, [](const std::string& piece) {
    std::cout << piece << std::flush;
    return true;
  }, &st);
  std::cout << "\n" << std::flush;
  std::cerr << "[" << speed_report(lm.load_seconds, st, *lm.model->backend()) << " | stop: " << st.stop_reason << "]\n";
}
}  // namespace

void add_run_command(CLI::App& app) {
  auto o = std::make_shared<RunOptions>();
  auto* cmd = app.add_subcommand("run", "Generate text from a prompt, streaming tokens as they are produced");
  cmd->add_option("model", o->model, "Hugging Face model directory or .upg file")->required();
  cmd->add_option("-p,--prompt", o->prompt, "Prompt text");
  cmd->add_option("-f,--file", o->prompt_file, "Read the prompt from this file");
  cmd->add_option("-c,--ctx", o->ctx, "Context length (0 = the model's maximum)")->check(CLI::NonNegativeNumber);
  cmd->add_flag("--no-bos", o->no_bos, "Do not add the tokenizer's BOS/EOS special tokens to the prompt");
  add_threads_flag(cmd, o->threads);
  add_device_flag(cmd, o->device);
  add_generation_flags(cmd, o->gen);
  add_tensor_parallel_flags(cmd, o->tp);
  cmd->callback([o] { run(*o); });
}

}  // namespace upg::cli
