// libFuzzer target for the chat-template interpreter: the lexer and parser (any text) and the
// renderer (a fixed conversation with a system prompt, a tool call, a tool result and an assistant
// turn, plus tools and extra variables), under the production limits (ChatTemplateOptions:
// output size, macro depth, loop steps). A template may fail only with upg::Error (its own
// raise_exception included); a crash, another exception or a hang is a bug.
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "base/error.h"
#include "fuzz_util.h"
#include "tokenizer/chat_template.h"

namespace {

const nlohmann::ordered_json& context() {
  static const nlohmann::ordered_json ctx = nlohmann::ordered_json::parse(R"({
    "messages": [
      {"role": "system", "content": "You are helpful."},
      {"role": "user", "content": "What is 2+2? \u00e9\u65e5"},
      {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function",
        "function": {"name": "add", "arguments": {"a": 2, "b": 2}}}]},
      {"role": "tool", "tool_call_id": "c1", "content": "4"},
      {"role": "assistant", "content": "It is 4."},
      {"role": "user", "content": [{"type": "text", "text": "Thanks"}]}
    ],
    "tools": [{"type": "function", "function": {"name": "add", "description": "Adds",
      "parameters": {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}}}}],
    "documents": null,
    "add_generation_prompt": true,
    "bos_token": "<s>",
    "eos_token": "</s>",
    "date_string": "26 Jul 2024",
    "n": 3, "f": 1.5, "flag": false, "nothing": null
  })");
  return ctx;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const upg::ChatTemplate t{std::string(upg::fuzz::as_text(data, size))};
    upg::ChatTemplateOptions opt;  // the production limits
    opt.now = 1721952000;
    (void)t.render(context(), opt);
  } catch (const upg::Error&) {
  }
  return 0;
}
