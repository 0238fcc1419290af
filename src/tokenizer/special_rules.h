// Which special tokens surround an encoded text and which ids are BOS/EOS, from three sources:
//  - tokenizer.json "post_processor": TemplateProcessing (its "single" template: the special
//    tokens before $A form the prefix, those after it the suffix), RobertaProcessing /
//    BertProcessing (cls ... sep), ByteLevel (nothing), Sequence of these, or null;
//  - tokenizer_config.json: bos_token / eos_token (a string or {"content": ...});
//    add_bos_token / add_eos_token, when present, replace the prefix / suffix by [BOS] / [EOS]
//    or nothing (as transformers' Llama fast tokenizer does);
//  - generation_config.json: bos_token_id, eos_token_id (an int or a list of ints).
#pragma once
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace upg {

struct SpecialRules {
  std::vector<int32_t> prefix, suffix;  // added around the text when add_special_tokens
  std::optional<int32_t> bos_id;
  std::string bos_text;
  std::vector<int32_t> eos_ids;
  std::string eos_text;
};

// token_id looks a token up by its tokenizer.json text; id_text gives that text back.
// tokenizer_config / generation_config are JSON null when absent.
SpecialRules parse_special_rules(const nlohmann::json& post_processor, const nlohmann::json& tokenizer_config,
                                 const nlohmann::json& generation_config,
                                 const std::function<std::optional<int32_t>(std::string_view)>& token_id,
                                 const std::function<std::string(int32_t)>& id_text);

}  // namespace upg
