#include "tokenizer/model_tokenizer.h"

#include <nlohmann/json.hpp>

#include "base/error.h"

namespace upg {

Tokenizer load_model_tokenizer(const Model& model, const std::string& name) {
  auto tok_json = model.file_text("tokenizer.json");
  UPG_CHECK(tok_json.has_value(), "model '", name.empty() ? model.source().path() : name, "' has no tokenizer.json");
  auto tok_cfg = model.file_text("tokenizer_config.json");
  auto gen_cfg = model.file_text("generation_config.json");
  return Tokenizer::from_json_strings(*tok_json, tok_cfg.value_or(""), gen_cfg.value_or(""));
}

std::optional<std::string> load_model_chat_template(const Model& model) {
  if (auto jinja = model.file_text("chat_template.jinja")) return *jinja;
  auto tok_cfg = model.file_text("tokenizer_config.json");
  if (!tok_cfg) return std::nullopt;
  auto cfg = nlohmann::json::parse(*tok_cfg, nullptr, /*allow_exceptions=*/false);
  if (!cfg.is_object() || !cfg.contains("chat_template")) return std::nullopt;
  const auto& ct = cfg["chat_template"];
  if (ct.is_string()) return ct.get<std::string>();
  if (ct.is_array())
    for (const auto& e : ct)
      if (e.is_object() && e.value("name", "") == "default" && e.contains("template") && e["template"].is_string())
        return e["template"].get<std::string>();
  return std::nullopt;
}

}  // namespace upg
