// Chat templates: the public API over the interpreter (parse once, render many times), the
// apply_chat_template convenience that mirrors transformers, and locating a model's template.
#include "tokenizer/chat_template.h"

#include <filesystem>

#include "base/mapped_file.h"
#include "tokenizer/chat_template_ast.h"

namespace upg {

ChatTemplate::ChatTemplate(std::string source)
    : source_(std::move(source)), program_(jinja::parse_template(source_)) {}
ChatTemplate::~ChatTemplate() = default;
ChatTemplate::ChatTemplate(ChatTemplate&&) noexcept = default;
ChatTemplate& ChatTemplate::operator=(ChatTemplate&&) noexcept = default;

std::string ChatTemplate::render(const nlohmann::json& context) const {
  return render(nlohmann::ordered_json(context), ChatTemplateOptions{});
}

std::string ChatTemplate::render(const nlohmann::ordered_json& context,
                                 const ChatTemplateOptions& options) const {
  jinja::Renderer renderer(options);
  return renderer.render(*program_, jinja::from_json(context));
}

std::string apply_chat_template(const std::string& source, const nlohmann::ordered_json& messages,
                                bool add_generation_prompt, const std::string& bos_token,
                                const std::string& eos_token, const nlohmann::ordered_json& extra,
                                const ChatTemplateOptions& options) {
  UPG_CHECK(messages.is_array(), "apply_chat_template: messages must be a JSON array, got ",
            messages.type_name());
  UPG_CHECK(extra.is_null() || extra.is_object(),
            "apply_chat_template: extra variables must be a JSON object, got ", extra.type_name());
  // transformers renders with messages, tools, documents, add_generation_prompt, then the
  // special tokens and any extra template kwargs.
  nlohmann::ordered_json ctx = nlohmann::ordered_json::object();
  ctx["messages"] = messages;
  ctx["tools"] = nullptr;
  ctx["documents"] = nullptr;
  ctx["add_generation_prompt"] = add_generation_prompt;
  ctx["bos_token"] = bos_token;
  ctx["eos_token"] = eos_token;
  if (extra.is_object())
    for (auto it = extra.begin(); it != extra.end(); ++it) ctx[it.key()] = it.value();
  return ChatTemplate(source).render(ctx, options);
}

std::string apply_chat_template(const std::string& source, const nlohmann::json& messages,
                                bool add_generation_prompt, const std::string& bos_token,
                                const std::string& eos_token, const nlohmann::json& extra) {
  return apply_chat_template(source, nlohmann::ordered_json(messages), add_generation_prompt,
                             bos_token, eos_token, nlohmann::ordered_json(extra), ChatTemplateOptions{});
}

std::optional<std::string> chat_template_from_config(const std::string& tokenizer_config_json,
                                                     const std::string& where) {
  nlohmann::json config;
  try {
    config = nlohmann::json::parse(tokenizer_config_json);
  } catch (const nlohmann::json::exception& e) {
    throw Error(str_cat(where, ": invalid JSON: ", e.what()));
  }
  if (!config.is_object() || !config.contains("chat_template") || config["chat_template"].is_null())
    return std::nullopt;
  const auto& ct = config["chat_template"];
  if (ct.is_string()) return ct.get<std::string>();
  UPG_CHECK(ct.is_array(), where, ": \"chat_template\" must be a string or a list of {name, template}, found ",
            ct.type_name());
  std::string names;
  for (const auto& entry : ct) {
    UPG_CHECK(entry.is_object() && entry.contains("name") && entry["name"].is_string() &&
                  entry.contains("template") && entry["template"].is_string(),
              where, ": each \"chat_template\" entry needs string \"name\" and \"template\"");
    if (entry["name"] == "default") return entry["template"].get<std::string>();
    names += (names.empty() ? "" : ", ") + entry["name"].get<std::string>();
  }
  throw Error(str_cat(where, ": \"chat_template\" lists templates (", names, ") but none is named \"default\""));
}

std::optional<std::string> find_chat_template(const std::string& model_dir) {
  namespace fs = std::filesystem;
  fs::path jinja_path = fs::path(model_dir) / "chat_template.jinja";
  if (fs::is_regular_file(jinja_path)) return read_text_file(jinja_path.string(), kMaxConfigFileBytes);
  fs::path config_path = fs::path(model_dir) / "tokenizer_config.json";
  if (!fs::is_regular_file(config_path)) return std::nullopt;
  return chat_template_from_config(read_text_file(config_path.string(), kMaxConfigFileBytes), config_path.string());
}

}  // namespace upg
