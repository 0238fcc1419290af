#include "server/openai_protocol.h"

#include <cmath>
#include <limits>

#include "tokenizer/tokenizer.h"

namespace upg::server {

using nlohmann::json;

json error_body(const ApiError& e) {
  return {{"error",
           {{"message", e.message},
            {"type", e.type},
            {"param", e.param.empty() ? json(nullptr) : json(e.param)},
            {"code", e.code.empty() ? json(nullptr) : json(e.code)}}}};
}

void bad_request(const std::string& message, const std::string& param) {
  throw ApiError(400, "invalid_request_error", message, param);
}

namespace {

const char* type_name(const json& v) { return v.type_name(); }

bool present(const json& j, const char* key) { return j.contains(key) && !j[key].is_null(); }

double number(const json& j, const char* key, double lo, double hi) {
  const json& v = j[key];
  if (!v.is_number()) bad_request(std::string("'") + key + "' must be a number, got " + type_name(v), key);
  const double d = v.get<double>();
  if (!std::isfinite(d) || d < lo || d > hi)
    bad_request(std::string("'") + key + "' must be between " + std::to_string(lo) + " and " + std::to_string(hi) +
                    ", got " + v.dump(),
                key);
  return d;
}

int64_t integer(const json& j, const char* key, int64_t lo, int64_t hi) {
  const json& v = j[key];
  if (!v.is_number_integer())
    bad_request(std::string("'") + key + "' must be an integer, got " + (v.is_number() ? v.dump() : type_name(v)), key);
  const int64_t i = v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(hi) ? hi + 1 : v.get<int64_t>();
  if (i < lo || i > hi)
    bad_request(std::string("'") + key + "' must be between " + std::to_string(lo) + " and " + std::to_string(hi) +
                    ", got " + v.dump(),
                key);
  return i;
}

bool boolean(const json& j, const char* key) {
  const json& v = j[key];
  if (!v.is_boolean()) bad_request(std::string("'") + key + "' must be true or false, got " + type_name(v), key);
  return v.get<bool>();
}

std::string text_content(const json& content, size_t i) {
  const std::string where = "messages[" + std::to_string(i) + "].content";
  if (content.is_null()) return "";
  if (content.is_string()) return content.get<std::string>();
  if (!content.is_array()) bad_request("'" + where + "' must be a string or an array of text parts", where);
  std::string out;
  for (const auto& part : content) {
    if (!part.is_object() || part.value("type", json()).get<std::string>() != "text" ||
        !part.contains("text") || !part["text"].is_string())
      bad_request("'" + where + "' may only hold parts of type \"text\" with a string \"text\" (this server reads text)",
                  where);
    out += part["text"].get<std::string>();
  }
  return out;
}

}  // namespace

ApiRequest parse_request(const std::string& body, Endpoint endpoint) {
  json j = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) bad_request("the request body is not valid JSON");
  if (!j.is_object()) bad_request(std::string("the request body must be a JSON object, got ") + type_name(j));
  try {
    ApiRequest r;
    r.endpoint = endpoint;
    if (!j.contains("model") || !j["model"].is_string()) bad_request("'model' is required and must be a string", "model");
    r.model = j["model"].get<std::string>();
    if (present(j, "stream")) r.stream = boolean(j, "stream");
    if (present(j, "stream_options")) {
      const json& so = j["stream_options"];
      if (!so.is_object()) bad_request("'stream_options' must be an object", "stream_options");
      if (!r.stream) bad_request("'stream_options' is only allowed with \"stream\": true", "stream_options");
      if (present(so, "include_usage")) r.include_usage = boolean(so, "include_usage");
    }
    if (present(j, "n") && integer(j, "n", 1, 1 << 20) != 1)
      bad_request("'n' must be 1: this server returns one choice per request", "n");
    for (const char* k : {"max_tokens", "max_completion_tokens"})
      if (present(j, k)) r.max_tokens = static_cast<int>(integer(j, k, 0, std::numeric_limits<int32_t>::max()));
    if (present(j, "temperature")) r.sampling.temperature = static_cast<float>(number(j, "temperature", 0, 2));
    if (present(j, "top_p")) {
      r.sampling.top_p = static_cast<float>(number(j, "top_p", 0, 1));
      if (*r.sampling.top_p == 0) r.sampling.top_p = std::numeric_limits<float>::min();
    }
    if (present(j, "top_k")) r.sampling.top_k = static_cast<int>(integer(j, "top_k", -1, 1 << 24));
    if (r.sampling.top_k && *r.sampling.top_k < 0) r.sampling.top_k = 0;
    if (present(j, "min_p")) r.sampling.min_p = static_cast<float>(number(j, "min_p", 0, 0.999999));
    if (present(j, "repetition_penalty"))
      r.sampling.repeat_penalty = static_cast<float>(number(j, "repetition_penalty", 1e-3, 100));
    if (present(j, "seed"))
      r.sampling.seed = static_cast<uint64_t>(integer(j, "seed", std::numeric_limits<int64_t>::min(),
                                                      std::numeric_limits<int64_t>::max()));
    if (present(j, "presence_penalty")) r.presence_penalty = static_cast<float>(number(j, "presence_penalty", -2, 2));
    if (present(j, "frequency_penalty"))
      r.frequency_penalty = static_cast<float>(number(j, "frequency_penalty", -2, 2));
    if (present(j, "ignore_eos")) r.ignore_eos = boolean(j, "ignore_eos");
    if (present(j, "stop")) {
      const json& s = j["stop"];
      if (s.is_string()) {
        r.stop.push_back(s.get<std::string>());
      } else if (s.is_array()) {
        if (s.size() > 16) bad_request("'stop' may hold at most 16 strings", "stop");
        for (const auto& x : s) {
          if (!x.is_string()) bad_request("'stop' must be a string or an array of strings", "stop");
          r.stop.push_back(x.get<std::string>());
        }
      } else {
        bad_request("'stop' must be a string or an array of strings", "stop");
      }
      for (const auto& x : r.stop)
        if (x.empty()) bad_request("'stop' strings must not be empty", "stop");
    }
    if (endpoint == Endpoint::Chat) {
      if (!j.contains("messages") || !j["messages"].is_array() || j["messages"].empty())
        bad_request("'messages' is required and must be a non-empty array", "messages");
      r.messages = json::array();
      for (size_t i = 0; i < j["messages"].size(); ++i) {
        const json& m = j["messages"][i];
        const std::string where = "messages[" + std::to_string(i) + "]";
        if (!m.is_object()) bad_request("'" + where + "' must be an object", where);
        if (!m.contains("role") || !m["role"].is_string()) bad_request("'" + where + ".role' must be a string", where);
        std::string role = m["role"].get<std::string>();
        if (role == "developer") role = "system";
        if (role != "system" && role != "user" && role != "assistant" && role != "tool")
          bad_request("'" + where + ".role' must be system, developer, user, assistant or tool, got \"" + role + "\"",
                      where + ".role");
        r.messages.push_back({{"role", role}, {"content", text_content(m.value("content", json()), i)}});
      }
      bool want = false;
      if (present(j, "logprobs")) want = boolean(j, "logprobs");
      if (present(j, "top_logprobs")) {
        const int top = static_cast<int>(integer(j, "top_logprobs", 0, 20));
        if (!want) bad_request("'top_logprobs' needs \"logprobs\": true", "top_logprobs");
        r.logprobs = top;
      } else if (want) {
        r.logprobs = 0;
      }
    } else {
      if (!j.contains("prompt")) bad_request("'prompt' is required", "prompt");
      const json& p = j["prompt"];
      if (p.is_string()) {
        r.prompt_text = p.get<std::string>();
      } else if (p.is_array() && !p.empty() && p.size() == 1 && p[0].is_string()) {
        r.prompt_text = p[0].get<std::string>();
      } else if (p.is_array() && !p.empty() && std::all_of(p.begin(), p.end(), [](const json& x) {
                   return x.is_number_integer();
                 })) {
        r.prompt_is_ids = true;
        for (const auto& x : p) {
          const int64_t id = x.get<int64_t>();
          if (id < 0 || id > std::numeric_limits<int32_t>::max()) bad_request("'prompt' holds a negative or huge token id", "prompt");
          r.prompt_ids.push_back(static_cast<int32_t>(id));
        }
      } else {
        bad_request("'prompt' must be a string or a non-empty array of token ids (one prompt per request)", "prompt");
      }
      if (present(j, "logprobs")) r.logprobs = static_cast<int>(integer(j, "logprobs", 0, 20));
      if (present(j, "echo")) r.echo = boolean(j, "echo");
      if (present(j, "suffix")) bad_request("'suffix' is not supported", "suffix");
      if (present(j, "best_of") && integer(j, "best_of", 1, 1 << 20) != 1)
        bad_request("'best_of' must be 1", "best_of");
    }
    return r;
  } catch (const json::exception& e) {
    bad_request(std::string("malformed request: ") + e.what());
  }
}

std::vector<std::string> token_texts(const Tokenizer& tok, const std::vector<int32_t>& ids) {
  StreamDecoder dec(tok, /*skip_special=*/true);
  std::vector<std::string> out;
  out.reserve(ids.size());
  for (int32_t id : ids) out.push_back(dec.push(id));
  if (!out.empty()) out.back() += dec.flush();
  return out;
}

static json bytes_of(const std::string& s) {
  json b = json::array();
  for (unsigned char c : s) b.push_back(static_cast<int>(c));
  return b;
}

// Valid UTF-8 for a JSON string: a lone token of a multi-byte character decodes to U+FFFD.
static std::string piece_text(const Tokenizer& tok, int32_t id) {
  StreamDecoder d(tok, /*skip_special=*/false);
  std::string s = d.push(id);
  return s + d.flush();
}

json chat_logprobs(const Tokenizer& tok, const std::vector<GeneratedToken>& tokens,
                   const std::vector<std::string>& texts) {
  json content = json::array();
  for (size_t i = 0; i < tokens.size(); ++i) {
    const auto& t = tokens[i];
    json top = json::array();
    for (const auto& alt : t.top) {
      const std::string s = piece_text(tok, alt.id);
      top.push_back({{"token", s}, {"logprob", alt.logprob}, {"bytes", bytes_of(s)}});
    }
    content.push_back({{"token", texts[i]}, {"logprob", t.logprob}, {"bytes", bytes_of(texts[i])}, {"top_logprobs", top}});
  }
  return {{"content", content}, {"refusal", nullptr}};
}

json completion_logprobs(const Tokenizer& tok, const std::vector<GeneratedToken>& tokens,
                         const std::vector<std::string>& texts, bool first_null, size_t offset0) {
  json toks = json::array(), lps = json::array(), tops = json::array(), offs = json::array();
  size_t off = offset0;
  for (size_t i = 0; i < tokens.size(); ++i) {
    toks.push_back(texts[i]);
    offs.push_back(off);
    off += texts[i].size();
    if (i == 0 && first_null) {
      lps.push_back(nullptr);
      tops.push_back(nullptr);
      continue;
    }
    lps.push_back(tokens[i].logprob);
    json top = json::object();
    for (const auto& alt : tokens[i].top) {
      const std::string s = piece_text(tok, alt.id);
      if (!top.contains(s)) top[s] = alt.logprob;  // (two ids may decode alike; keep the likelier)
    }
    tops.push_back(top);
  }
  return {{"tokens", toks}, {"token_logprobs", lps}, {"top_logprobs", tops}, {"text_offset", offs}};
}

json usage_json(int prompt_tokens, int completion_tokens) {
  return {{"prompt_tokens", prompt_tokens},
          {"completion_tokens", completion_tokens},
          {"total_tokens", prompt_tokens + completion_tokens}};
}


}  // namespace upg::server
