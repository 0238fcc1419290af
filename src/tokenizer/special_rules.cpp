#include "tokenizer/special_rules.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "base/error.h"

namespace upg {
namespace {

using nlohmann::json;

// A token id from a config file: an integer in [0, 2^31); `what` names the file and field.
int32_t id_value(const json& v, const char* what) {
  UPG_CHECK(v.is_number_integer(), what, " must be an integer token id, found ", v.dump());
  UPG_CHECK(v.is_number_unsigned() || v.get<int64_t>() >= 0, what, " must not be negative, found ", v.dump());
  UPG_CHECK(v.get<uint64_t>() <= 0x7fffffffu, what, " is too large, found ", v.dump());
  return static_cast<int32_t>(v.get<uint64_t>());
}

void parse_post(const json& j, SpecialRules& r, const std::function<std::optional<int32_t>(std::string_view)>& token_id) {
  if (j.is_null()) return;
  UPG_CHECK(j.is_object() && j.contains("type") && j["type"].is_string(),
            "tokenizer.json: post_processor must be an object with a string \"type\"");
  const std::string type = j["type"];
  if (type == "Sequence") {
    for (const auto& p : j.at("processors")) parse_post(p, r, token_id);
  } else if (type == "ByteLevel") {
  } else if (type == "TemplateProcessing") {
    r.prefix.clear();
    r.suffix.clear();
    bool seen_a = false;
    for (const auto& item : j.at("single")) {
      if (item.contains("Sequence")) {
        seen_a = true;
        continue;
      }
      UPG_CHECK(item.contains("SpecialToken"), "tokenizer.json: TemplateProcessing item ", item.dump(),
                " is neither Sequence nor SpecialToken");
      const std::string name = item["SpecialToken"].at("id").get<std::string>();
      std::vector<int32_t> ids;
      const json& st = j.contains("special_tokens") ? j["special_tokens"] : json::object();
      if (st.contains(name) && st[name].contains("ids")) {
        UPG_CHECK(st[name]["ids"].is_array(), "tokenizer.json: TemplateProcessing special_tokens.", name,
                  ".ids must be a list");
        for (const auto& id : st[name]["ids"])
          ids.push_back(id_value(id, "tokenizer.json: TemplateProcessing special token id"));
      } else {
        auto id = token_id(name);
        UPG_CHECK(id.has_value(), "tokenizer.json: TemplateProcessing special token '", name, "' is unknown");
        ids.push_back(*id);
      }
      auto& dst = seen_a ? r.suffix : r.prefix;
      dst.insert(dst.end(), ids.begin(), ids.end());
    }
  } else if (type == "RobertaProcessing" || type == "BertProcessing") {
    r.prefix = {id_value(j.at("cls").at(1), "tokenizer.json: post_processor.cls[1]")};
    r.suffix = {id_value(j.at("sep").at(1), "tokenizer.json: post_processor.sep[1]")};
  } else {
    throw Error(str_cat("tokenizer.json: unsupported post_processor type '", type,
                        "' (supported: TemplateProcessing, ByteLevel, RobertaProcessing, BertProcessing, Sequence)"));
  }
}

// "bos_token": "<s>" | {"content": "<s>", ...} | null -> the text, or "".
std::string token_text(const json& cfg, const char* key) {
  if (!cfg.is_object() || !cfg.contains(key)) return {};
  const json& v = cfg[key];
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string()) return v["content"].get<std::string>();
  UPG_CHECK(v.is_null(), "tokenizer_config.json: ", key, " must be a string, an object with a string \"content\" or null, found ",
            v.dump());
  return {};
}

}  // namespace

SpecialRules parse_special_rules(const json& post, const json& tcfg, const json& gcfg,
                                 const std::function<std::optional<int32_t>(std::string_view)>& token_id,
                                 const std::function<std::string(int32_t)>& id_text) {
  SpecialRules r;
  parse_post(post, r, token_id);

  // BOS
  r.bos_text = token_text(tcfg, "bos_token");
  if (!r.bos_text.empty()) {
    r.bos_id = token_id(r.bos_text);
    UPG_CHECK(r.bos_id.has_value(), "tokenizer_config.json: bos_token '", r.bos_text, "' is not a known token");
  } else if (!(tcfg.is_object() && tcfg.contains("bos_token")) &&  // an explicit null means "no BOS"
             gcfg.is_object() && gcfg.contains("bos_token_id") && gcfg["bos_token_id"].is_number_integer()) {
    r.bos_id = id_value(gcfg["bos_token_id"], "generation_config.json: bos_token_id");
    r.bos_text = id_text(*r.bos_id);
  }

  // EOS: tokenizer_config first, then generation_config's int or list.
  r.eos_text = token_text(tcfg, "eos_token");
  if (!r.eos_text.empty()) {
    auto id = token_id(r.eos_text);
    UPG_CHECK(id.has_value(), "tokenizer_config.json: eos_token '", r.eos_text, "' is not a known token");
    r.eos_ids.push_back(*id);
  }
  if (gcfg.is_object() && gcfg.contains("eos_token_id")) {
    const json& e = gcfg["eos_token_id"];
    std::vector<int32_t> ids;
    if (e.is_number_integer()) {
      ids.push_back(id_value(e, "generation_config.json: eos_token_id"));
    } else if (e.is_array()) {
      for (const auto& x : e) {
        UPG_CHECK(x.is_number_integer(), "generation_config.json: eos_token_id list holds a non-integer ", x.dump());
        ids.push_back(id_value(x, "generation_config.json: eos_token_id"));
      }
    } else if (!e.is_null()) {
      throw Error(str_cat("generation_config.json: eos_token_id must be an int or a list, found ", e.dump()));
    }
    for (int32_t id : ids)
      if (std::find(r.eos_ids.begin(), r.eos_ids.end(), id) == r.eos_ids.end()) r.eos_ids.push_back(id);
  }
  if (r.eos_text.empty() && !r.eos_ids.empty()) r.eos_text = id_text(r.eos_ids[0]);

  // Explicit add_bos_token / add_eos_token override the post-processor.
  for (const char* key : {"add_bos_token", "add_eos_token"})
    UPG_CHECK(!tcfg.is_object() || !tcfg.contains(key) || tcfg[key].is_boolean() || tcfg[key].is_null(),
              "tokenizer_config.json: ", key, " must be true or false, found ", tcfg[key].dump());
  if (tcfg.is_object() && tcfg.contains("add_bos_token") && tcfg["add_bos_token"].is_boolean()) {
    r.prefix.clear();
    if (tcfg["add_bos_token"].get<bool>()) {
      UPG_CHECK(r.bos_id.has_value(), "tokenizer_config.json: add_bos_token is true but there is no bos_token");
      r.prefix.push_back(*r.bos_id);
    }
  }
  if (tcfg.is_object() && tcfg.contains("add_eos_token") && tcfg["add_eos_token"].is_boolean()) {
    r.suffix.clear();
    if (tcfg["add_eos_token"].get<bool>()) {
      UPG_CHECK(!r.eos_ids.empty(), "tokenizer_config.json: add_eos_token is true but there is no eos_token");
      r.suffix.push_back(r.eos_ids[0]);
    }
  }
  return r;
}

}  // namespace upg
