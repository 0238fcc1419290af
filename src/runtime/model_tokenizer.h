// The tokenizer and chat template that come with a loaded model (a Hugging Face directory or a UPG
// file, which carries the same text files in its metadata): what the command line, the server and
// the Python module use, read the same way everywhere.
#pragma once
#include <optional>
#include <string>

#include "runtime/model.h"
#include "tokenizer/tokenizer.h"

namespace upg {

// From the model's tokenizer.json, with tokenizer_config.json and generation_config.json when
// present. Throws Error "model '<path>' has no tokenizer.json" (path as given in `name`, else the
// model's source path) when it is absent, or the tokenizer's own errors.
Tokenizer load_model_tokenizer(const Model& model, const std::string& name = "");

// chat_template.jinja, else tokenizer_config.json's "chat_template" (a string, or a list of
// {name, template} of which "default" is used); nullopt when the model has none.
std::optional<std::string> load_model_chat_template(const Model& model);

}  // namespace upg
