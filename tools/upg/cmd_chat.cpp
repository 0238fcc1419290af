// upg chat MODEL: an interactive chat using the model's chat template. Each turn re-renders the
// whole conversation with the template, reuses the KV cache for the longest common token prefix
// and only evaluates what is new.
#include <unistd.h>

#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>

#include "base/error.h"
#include "commands.h"
#include "loaded_model.h"
#include "tokenizer/chat_template.h"

namespace upg::cli {

namespace {
struct ChatOptions {
  std::string model;
  std::string system;
  int threads = 0;
  std::string device = "cpu";
  int ctx = 0;
  GenerationFlags gen;
  TensorParallelFlags tp;
};

void chat(const ChatOptions& o) {
  apply_threads(o.threads);
  LoadedModel lm = load_model(o.model, o.device);
  UPG_CHECK(lm.chat_template.has_value(), "model '", o.model,
            "' has no chat template (chat_template.jinja or tokenizer_config.json's chat_template); use `upg run`");
  Session session(*lm.model, o.ctx, o.gen.kv(), o.gen.kv_bytes(), 0, o.tp.resolve(*lm.model->backend()));
  const GenerateOptions gen = o.gen.resolve(*lm.model);
  std::vector<int32_t> in_cache;  // tokens the session's KV cache holds, in order
  nlohmann::json messages = nlohmann::json::array();
  if (!o.system.empty()) messages.push_back({{"role", "system"}, {"content", o.system}});
  const bool tty = isatty(STDIN_FILENO);
  GenerateStats total;
  std::string line;
  while (true) {
    if (tty) std::cerr << "> " << std::flush;
    if (!std::getline(std::cin, line)) break;
    if (line == "/exit" || line == "/quit") break;
    if (line.empty()) continue;
    messages.push_back({{"role", "user"}, {"content", line}});
    std::string text = apply_chat_template(*lm.chat_template, messages, true, lm.tokenizer.bos_token(),
                                           lm.tokenizer.eos_token());
    std::vector<int32_t> ids = lm.tokenizer.encode(text, false);
    size_t common = 0;
    while (common < ids.size() && common < in_cache.size() && ids[common] == in_cache[common]) ++common;
    if (common == ids.size()) --common;  // at least one token must be evaluated for fresh logits
    session.truncate(static_cast<int>(common));
    in_cache.resize(common);
    std::vector<int32_t> fresh(ids.begin() + common, ids.end());
    GenerateStats st;
    std::string reply;
    auto out = generate(session, lm.tokenizer, fresh, gen, [&](const std::string& piece) {
      std::cout << piece << std::flush;
      reply += piece;
      return true;
    }, &st);
    std::cout << "\n" << std::flush;
    in_cache.insert(in_cache.end(), fresh.begin(), fresh.end());
    // The session holds every generated token but the last (which was sampled, not evaluated).
    in_cache.insert(in_cache.end(), out.begin(), out.end());
    in_cache.resize(static_cast<size_t>(session.position()));
    messages.push_back({{"role", "assistant"}, {"content", reply}});
    total.prompt_tokens += st.prompt_tokens;
    total.generated_tokens += st.generated_tokens;
    total.prefill_seconds += st.prefill_seconds;
    total.decode_seconds += st.decode_seconds;
  }
  std::cerr << "[" << speed_report(lm.load_seconds, total, *lm.model->backend()) << "]\n";
}
}  // namespace

void add_chat_command(CLI::App& app) {
  auto o = std::make_shared<ChatOptions>();
  auto* cmd = app.add_subcommand("chat", "Interactive chat with the model's chat template (reads turns from stdin)");
  cmd->add_option("model", o->model, "Hugging Face model directory or .upg file")->required();
  cmd->add_option("-s,--system", o->system, "System prompt");
  cmd->add_option("-c,--ctx", o->ctx, "Context length (0 = the model's maximum)")->check(CLI::NonNegativeNumber);
  add_threads_flag(cmd, o->threads);
  add_device_flag(cmd, o->device);
  add_generation_flags(cmd, o->gen);
  add_tensor_parallel_flags(cmd, o->tp);
  cmd->callback([o] { chat(*o); });
}

}  // namespace upg::cli
