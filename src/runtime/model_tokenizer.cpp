#include "runtime/model_tokenizer.h"

#include <nlohmann/json.hpp>

#include "base/error.h"
#include "tokenizer/chat_template.h"

namespace upg {

Tokenizer load_model_tokenizer(const Model& model, const std::string& name) {
  auto tok_json = model.file_text("tokenizer.json");
  UPG_CHECK(tok_json.has_value(), "model '", name.empty() ? model.source().path() : name, "' has no tokenizer.json");
  auto tok_cfg = model.file_text("tokenizer_config.json");
  auto gen_cfg = model.file_text("generation_config.json");
  try {
    return Tokenizer::from_json_strings(*tok_json, tok_cfg.value_or(""), gen_cfg.value_or(""));
  } catch (const Error& e) {  // name the model: the messages name only the file inside it
    throw Error(str_cat(model.source().path(), ": ", e.what()));
  }
}

std::optional<std::string> load_model_chat_template(const Model& model) {
  if (auto jinja = model.file_text("chat_template.jinja")) return *jinja;
  auto tok_cfg = model.file_text("tokenizer_config.json");
  if (!tok_cfg) return std::nullopt;
  return chat_template_from_config(*tok_cfg, str_cat(model.source().path(), ": tokenizer_config.json"));
}

}  // namespace upg
