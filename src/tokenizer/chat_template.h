// Chat templates: Hugging Face's Jinja2 programs that turn a list of messages into a prompt.
//
// A small Jinja2 interpreter with the semantics transformers uses (ImmutableSandboxedEnvironment,
// trim_blocks=True, lstrip_blocks=True, loopcontrols, tojson = json.dumps(ensure_ascii=False),
// raise_exception, strftime_now). Tested byte-for-byte against python3-jinja2 on the published
// templates of Phi-4, Llama-3.1/3.2/3.3, Qwen2.5, Mistral v0.1-v0.3 and Gemma-2
// (tests/data/chat_templates/).
//
// Supported: {{ }}, {% %}, {# #}, -/+ whitespace control, if/elif/else, for (loop.*, for-else,
// `for x in y if c`, break/continue, unpacking), set (incl. namespace attributes and block set),
// macro, filter blocks, with, generation; the usual filters, tests, str/dict methods and
// operators. Not supported: include/extends/import/block, call blocks, recursive loops.
// Non-goal: Unicode case mapping beyond ASCII in upper/lower/title/capitalize.
//
// Key order: Python dicts keep insertion order and tojson shows it. nlohmann::json sorts object
// keys, so pass nlohmann::ordered_json to reproduce Hugging Face output for tool schemas.
#pragma once
#include <nlohmann/json.hpp>

#include <cstddef>
#include <cstdint>
#include <ctime>
#include <memory>
#include <optional>
#include <string>

#include "base/error.h"

namespace upg {

namespace jinja {
struct Program;
}

// An error the template itself raised with raise_exception(msg); what() is exactly msg
// (e.g. "Conversation roles must alternate user/assistant/user/assistant/...").
class ChatTemplateException : public Error {
 public:
  using Error::Error;
};

// Limits that keep a hostile template from hanging or exhausting memory: going past one throws
// Error, never crashes.
struct ChatTemplateOptions {
  size_t max_output_bytes = size_t{32} << 20;  // rendered text, also any captured block/string
  int max_call_depth = 100;                    // nested macro calls
  uint64_t max_loop_steps = 1'000'000;         // loop iterations + filter work, summed
  // Time strftime_now() formats (local time); unset = now. Tests fix it for reproducibility.
  std::optional<std::time_t> now;
};

class ChatTemplate {
 public:
  // Parses the template; throws Error naming line and column on a syntax error.
  explicit ChatTemplate(std::string source);
  ~ChatTemplate();
  ChatTemplate(ChatTemplate&&) noexcept;
  ChatTemplate& operator=(ChatTemplate&&) noexcept;

  // Renders with the given variables (a JSON object: messages, add_generation_prompt, ...).
  // Errors (undefined attribute of an undefined value, type errors, limits) throw Error naming
  // the template line; raise_exception() throws ChatTemplateException with the template's text.
  std::string render(const nlohmann::json& context) const;
  std::string render(const nlohmann::ordered_json& context,
                     const ChatTemplateOptions& options = {}) const;

  const std::string& source() const { return source_; }

 private:
  std::string source_;
  std::unique_ptr<jinja::Program> program_;
};

// What transformers' apply_chat_template(..., tokenize=False) renders: the template sees
// messages, add_generation_prompt, bos_token, eos_token, tools (null unless extra has "tools"),
// documents (null unless given) and every other key of `extra` (an object or null).
std::string apply_chat_template(const std::string& source, const nlohmann::json& messages,
                                bool add_generation_prompt, const std::string& bos_token,
                                const std::string& eos_token, const nlohmann::json& extra = {});
std::string apply_chat_template(const std::string& source, const nlohmann::ordered_json& messages,
                                bool add_generation_prompt, const std::string& bos_token,
                                const std::string& eos_token, const nlohmann::ordered_json& extra,
                                const ChatTemplateOptions& options = {});

// The chat template of a Hugging Face model directory: chat_template.jinja if present, else
// tokenizer_config.json's "chat_template" (a string, or a list of {name, template} from which
// the "default" entry is taken). nullopt when the model has none; Error when a file is malformed.
std::optional<std::string> find_chat_template(const std::string& model_dir);

// The template in the text of a tokenizer_config.json (as find_chat_template reads it); `where`
// names the file in errors. nullopt when it has no "chat_template"; Error when malformed.
std::optional<std::string> chat_template_from_config(const std::string& tokenizer_config_json,
                                                     const std::string& where);

}  // namespace upg
