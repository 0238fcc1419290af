#include "tokenizer/decoder.h"

#include <nlohmann/json.hpp>

#include "base/error.h"
#include "tokenizer/byte_level.h"

namespace upg {
namespace {

using nlohmann::json;

void parse_into(const json& j, DecodeRules& r) {
  if (j.is_null()) return;
  UPG_CHECK(j.is_object() && j.contains("type") && j["type"].is_string(),
            "tokenizer.json: decoder must be an object with a string \"type\", found ", j.dump().substr(0, 200));
  const std::string type = j["type"];
  if (type == "Sequence") {
    for (const auto& d : j.at("decoders")) parse_into(d, r);
  } else if (type == "ByteLevel") {
    r.byte_level = true;
  } else if (type == "ByteFallback") {
    r.byte_fallback = true;
  } else if (type == "Fuse") {
  } else if (type == "Replace") {
    const json& pat = j.at("pattern");
    UPG_CHECK(pat.contains("String"), "tokenizer.json: decoder Replace supports only a String pattern, found ",
              pat.dump());
    r.replace.emplace_back(pat["String"].get<std::string>(), j.at("content").get<std::string>());
  } else if (type == "Strip") {
    const std::string content = j.value("content", std::string(" "));
    UPG_CHECK(content == " ", "tokenizer.json: decoder Strip supports only content ' ', found '", content, "'");
    r.strip_left += j.value("start", 0);
    r.strip_right += j.value("stop", 0);
  } else if (type == "Metaspace") {
    r.replace.emplace_back(j.value("replacement", std::string("\xE2\x96\x81")), " ");
    bool prepend = j.value("add_prefix_space", true);
    if (j.contains("prepend_scheme") && j["prepend_scheme"].is_string()) prepend = j["prepend_scheme"] != "never";
    if (prepend) r.strip_left += 1;
  } else {
    throw Error(str_cat("tokenizer.json: unsupported decoder type '", type,
                        "' (supported: Sequence, ByteLevel, ByteFallback, Fuse, Replace, Strip, Metaspace)"));
  }
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

}  // namespace

DecodeRules parse_decoder(const json& j) {
  DecodeRules r;
  parse_into(j, r);
  return r;
}

std::string token_bytes(const DecodeRules& r, const std::string& token) {
  if (r.byte_fallback && token.size() == 6 && token.compare(0, 3, "<0x") == 0 && token[5] == '>') {
    const int hi = hex_digit(token[3]), lo = hex_digit(token[4]);
    if (hi >= 0 && lo >= 0) return std::string(1, static_cast<char>(hi * 16 + lo));
  }
  std::string t = token;
  for (const auto& [from, to] : r.replace) {
    if (from.empty()) continue;
    std::string out;
    size_t pos = 0;
    for (size_t hit; (hit = t.find(from, pos)) != std::string::npos; pos = hit + from.size()) {
      out.append(t, pos, hit - pos);
      out += to;
    }
    out.append(t, pos);
    t = std::move(out);
  }
  if (r.byte_level) {
    // A token with characters outside the byte alphabet decodes to its own UTF-8 text.
    if (auto raw = byte_level::decode(t)) return *raw;
  }
  return t;
}

}  // namespace upg
