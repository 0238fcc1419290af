#include "tokenizer/tokenizer.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "base/error.h"
#include "base/mapped_file.h"
#include "tokenizer/tokenizer_impl.h"

namespace upg {

using nlohmann::json;

namespace {

json parse_json(std::string_view text, const char* what) {
  try {
    return json::parse(text.begin(), text.end());
  } catch (const json::exception& e) {  // parse_error, or out_of_range for a number like 1E400
    throw Error(str_cat(what, ": malformed JSON: ", e.what()));
  }
}

bool opt_bool(const json& t, const char* key, bool def, size_t i) {
  if (!t.contains(key) || t[key].is_null()) return def;
  UPG_CHECK(t[key].is_boolean(), "tokenizer.json: added_tokens[", i, "].", key, " must be true or false, found ",
            t[key].dump());
  return t[key].get<bool>();
}

std::vector<AddedToken> parse_added_tokens(const json& j) {
  std::vector<AddedToken> out;
  if (j.is_null()) return out;
  UPG_CHECK(j.is_array(), "tokenizer.json: added_tokens must be an array, found ", j.type_name());
  for (size_t i = 0; i < j.size(); ++i) {
    const json& t = j[i];
    UPG_CHECK(t.is_object(), "tokenizer.json: added_tokens[", i, "] must be an object, found ", t.type_name());
    UPG_CHECK(t.contains("id") && t["id"].is_number_integer(), "tokenizer.json: added_tokens[", i,
              "].id must be an integer, found ", t.contains("id") ? t["id"].dump() : "nothing");
    const bool neg = t["id"].is_number_unsigned() ? false : t["id"].get<int64_t>() < 0;
    UPG_CHECK(!neg, "tokenizer.json: added token id ", t["id"].dump(), " is negative");
    const uint64_t id = t["id"].get<uint64_t>();
    UPG_CHECK(id < static_cast<uint64_t>(Tokenizer::kMaxVocabSize), "tokenizer.json: added token id ", id,
              " is too large (ids must be below ", Tokenizer::kMaxVocabSize, ")");
    AddedToken a;
    a.id = static_cast<int32_t>(id);
    UPG_CHECK(t.contains("content") && t["content"].is_string(), "tokenizer.json: added_tokens[", i,
              "].content must be a string");
    a.content = t["content"].get<std::string>();
    UPG_CHECK(!a.content.empty(), "tokenizer.json: added token ", a.id, " has empty content");
    a.special = opt_bool(t, "special", false, i);
    a.lstrip = opt_bool(t, "lstrip", false, i);
    a.rstrip = opt_bool(t, "rstrip", false, i);
    a.single_word = opt_bool(t, "single_word", false, i);
    a.normalized = opt_bool(t, "normalized", !a.special, i);
    out.push_back(std::move(a));
  }
  return out;
}

std::shared_ptr<Tokenizer::Impl> build(const json& tj, const json& tcfg, const json& gcfg) {
  UPG_CHECK(tj.is_object(), "tokenizer.json: top level must be a JSON object");
  UPG_CHECK(tj.contains("model") && tj["model"].is_object(), "tokenizer.json: missing \"model\" object");
  const json& m = tj["model"];
  const std::string type = m.contains("type") && m["type"].is_string() ? m["type"].get<std::string>()
                           : m.contains("merges")                      ? "BPE"
                                                                       : "(none)";
  UPG_CHECK(type == "BPE", "tokenizer.json: unsupported model type '", type, "' (supported: BPE)");

  auto impl = std::make_shared<Tokenizer::Impl>();
  impl->model = std::make_unique<BpeModel>(m);
  impl->normalizer = make_normalizer(tj.value("normalizer", json()));
  impl->pre = make_pretokenizer(tj.value("pre_tokenizer", json()));
  impl->decode_rules = parse_decoder(tj.value("decoder", json()));
  if (impl->pre && impl->pre->byte_level()) impl->decode_rules.byte_level = true;

  std::vector<AddedToken> added = parse_added_tokens(tj.value("added_tokens", json()));
  int32_t n = 0;
  for (const auto& [tok, id] : impl->model->vocab()) {
    UPG_CHECK(id < Tokenizer::kMaxVocabSize, "tokenizer.json: model.vocab id ", id, " of '", tok,
              "' is too large (ids must be below ", Tokenizer::kMaxVocabSize, ")");
    n = std::max(n, id + 1);
  }
  for (const auto& a : added) n = std::max(n, a.id + 1);
  impl->id_text.assign(n, std::string());
  impl->pieces.assign(n, std::string());
  impl->special.assign(n, 0);
  for (const auto& [tok, id] : impl->model->vocab()) {
    impl->token_ids.emplace(tok, id);
    impl->id_text[id] = tok;
    impl->pieces[id] = token_bytes(impl->decode_rules, tok);
  }
  std::vector<AddedToken> raw, normalized;
  for (const auto& a : added) {
    impl->token_ids.insert_or_assign(a.content, a.id);
    impl->id_text[a.id] = a.content;
    impl->pieces[a.id] = a.content;
    impl->special[a.id] = a.special ? 1 : 0;
    // Without a normalizer both passes see the same text; match everything on the raw input.
    (a.normalized && impl->normalizer ? normalized : raw).push_back(a);
  }
  impl->raw_added = AddedTokenMatcher(std::move(raw));
  impl->normalized_added = AddedTokenMatcher(std::move(normalized));

  const Tokenizer::Impl* p = impl.get();
  impl->rules = parse_special_rules(
      tj.value("post_processor", json()), tcfg, gcfg,
      [p](std::string_view t) -> std::optional<int32_t> {
        auto it = p->token_ids.find(t);
        if (it == p->token_ids.end()) return std::nullopt;
        return it->second;
      },
      [p](int32_t id) { return id >= 0 && id < p->vocab_size() ? p->id_text[id] : std::string(); });
  for (int32_t id : impl->rules.prefix) impl->check_id(id);
  for (int32_t id : impl->rules.suffix) impl->check_id(id);
  return impl;
}

}  // namespace

void Tokenizer::Impl::check_id(int32_t id) const {
  UPG_CHECK(id >= 0 && id < vocab_size(), "tokenizer: token id ", id, " is outside the vocabulary [0, ", vocab_size(),
            ")");
}

void Tokenizer::Impl::encode_segment(std::string_view text, bool at_start, std::vector<int32_t>& out) const {
  std::string s(text);
  if (normalizer) normalizer->apply(s);
  auto encode_text = [&](std::string_view t, bool start) {
    if (t.empty()) return;
    if (!pre) return model->encode_word(t, out);
    std::vector<PreToken> words{PreToken{std::string(t), start}};
    pre->apply(words);
    for (const PreToken& w : words) model->encode_word(w.text, out);
  };
  if (normalized_added.empty()) return encode_text(s, at_start);
  for (const Segment& seg : normalized_added.split(s)) {
    if (seg.id >= 0) out.push_back(seg.id);
    else encode_text(std::string_view(s).substr(seg.begin, seg.end - seg.begin), at_start && seg.begin == 0);
  }
}

Tokenizer Tokenizer::from_json_strings(std::string_view tokenizer_json, std::string_view tokenizer_config_json,
                                       std::string_view generation_config_json) {
  const json tj = parse_json(tokenizer_json, "tokenizer.json");
  const json tc = tokenizer_config_json.empty() ? json() : parse_json(tokenizer_config_json, "tokenizer_config.json");
  const json gc =
      generation_config_json.empty() ? json() : parse_json(generation_config_json, "generation_config.json");
  UPG_CHECK(tc.is_null() || tc.is_object(), "tokenizer_config.json: expected a JSON object, found ", tc.type_name());
  UPG_CHECK(gc.is_null() || gc.is_object(), "generation_config.json: expected a JSON object, found ", gc.type_name());
  try {
    return Tokenizer(build(tj, tc, gc));
  } catch (const json::exception& e) {  // wrong type or missing key deep inside a component
    throw Error(str_cat("tokenizer.json: unexpected structure: ", e.what()));
  }
}

Tokenizer Tokenizer::from_dir(const std::string& dir) {
  const std::string tj_path = dir + "/tokenizer.json";
  UPG_CHECK(file_exists(tj_path), "tokenizer: ", tj_path, " not found");
  const std::string tj = read_text_file(tj_path, kMaxTokenizerFileBytes);
  auto optional_file = [&](const char* name) {
    const std::string p = dir + "/" + name;
    return file_exists(p) ? read_text_file(p, kMaxConfigFileBytes) : std::string();
  };
  const std::string tc = optional_file("tokenizer_config.json");
  std::string gc = optional_file("generation_config.json");
  if (gc.empty()) gc = optional_file("config.json");  // same bos/eos_token_id keys
  try {
    return from_json_strings(tj, tc, gc);
  } catch (const Error& e) {
    throw Error(str_cat(dir, ": ", e.what()));
  }
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special_tokens) const {
  const Impl& im = *impl_;
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 4);
  if (add_special_tokens) out = im.rules.prefix;
  if (im.raw_added.empty()) {
    if (!text.empty()) im.encode_segment(text, true, out);
  } else {
    for (const Segment& seg : im.raw_added.split(text)) {
      if (seg.id >= 0) out.push_back(seg.id);
      else im.encode_segment(text.substr(seg.begin, seg.end - seg.begin), seg.begin == 0, out);
    }
  }
  if (add_special_tokens) out.insert(out.end(), im.rules.suffix.begin(), im.rules.suffix.end());
  return out;
}

std::string Tokenizer::decode(std::span<const int32_t> ids, bool skip_special) const {
  const Impl& im = *impl_;
  std::string out;
  for (int32_t id : ids) {
    im.check_id(id);
    if (skip_special && im.special[id]) continue;
    out += im.pieces[id];
  }
  size_t b = 0;
  while (b < im.decode_rules.strip_left && b < out.size() && out[b] == ' ') ++b;
  size_t e = out.size(), k = 0;
  while (k < im.decode_rules.strip_right && e > b && out[e - 1] == ' ') --e, ++k;
  return out.substr(b, e - b);
}

std::string Tokenizer::token_piece(int32_t id) const {
  impl_->check_id(id);
  return impl_->pieces[id];
}

int32_t Tokenizer::vocab_size() const { return impl_->vocab_size(); }
std::optional<int32_t> Tokenizer::bos_id() const { return impl_->rules.bos_id; }
bool Tokenizer::add_bos() const {
  return impl_->rules.bos_id && !impl_->rules.prefix.empty() && impl_->rules.prefix[0] == *impl_->rules.bos_id;
}
std::vector<int32_t> Tokenizer::eos_ids() const { return impl_->rules.eos_ids; }
std::string Tokenizer::bos_token() const { return impl_->rules.bos_text; }
std::string Tokenizer::eos_token() const { return impl_->rules.eos_text; }

bool Tokenizer::is_special(int32_t id) const { return id >= 0 && id < vocab_size() && impl_->special[id]; }

std::optional<int32_t> Tokenizer::token_to_id(std::string_view token) const {
  auto it = impl_->token_ids.find(token);
  if (it == impl_->token_ids.end()) return std::nullopt;
  return it->second;
}

}  // namespace upg
