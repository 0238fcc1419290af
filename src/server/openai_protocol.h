// The OpenAI HTTP API's JSON, both ways: request bodies of /v1/chat/completions and
// /v1/completions checked and turned into a GenerationRequest (plus what the response needs), and
// the response objects, streamed chunks and errors built in OpenAI's shapes. No I/O here.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "runtime/sampler.h"
#include "runtime/scheduler.h"

namespace upg::server {

// An error answered as {"error": {"message", "type", "param", "code"}} with an HTTP status.
struct ApiError : std::exception {
  int status;
  std::string type;     // invalid_request_error, authentication_error, not_found_error, ...
  std::string message;
  std::string param;    // the offending field, or ""
  std::string code;     // OpenAI's code string, or ""
  ApiError(int s, std::string t, std::string m, std::string p = {}, std::string c = {})
      : status(s), type(std::move(t)), message(std::move(m)), param(std::move(p)), code(std::move(c)) {}
  const char* what() const noexcept override { return message.c_str(); }
};

nlohmann::json error_body(const ApiError& e);
// 400 invalid_request_error naming the field.
[[noreturn]] void bad_request(const std::string& message, const std::string& param = {});

enum class Endpoint { Chat, Completion };

// What a request asks for, in the server's terms. Sampling fields are the user's choices only;
// the server lays them over the model's defaults (resolve_sampling).
struct ApiRequest {
  Endpoint endpoint = Endpoint::Chat;
  std::string model;
  bool stream = false;
  bool include_usage = false;       // stream_options.include_usage
  nlohmann::json messages;          // chat: [{role, content: string}] (content parts joined)
  std::string prompt_text;          // completions: the prompt string (when given as text)
  std::vector<int32_t> prompt_ids;  // completions: the prompt as token ids (when given as ids)
  bool prompt_is_ids = false;
  std::optional<int> max_tokens;    // max_tokens / max_completion_tokens
  SamplingOverrides sampling;
  std::optional<float> presence_penalty, frequency_penalty;
  std::vector<std::string> stop;
  int logprobs = -1;                // chat: top_logprobs when logprobs is true; completions: logprobs
  bool echo = false;                // completions
  bool ignore_eos = false;          // extension (as vLLM/llama.cpp): keep going past end of sequence
};

// Parses and checks a body. Throws ApiError (400) naming the field: malformed JSON, wrong types,
// out-of-range values, n > 1, unsupported content parts.
ApiRequest parse_request(const std::string& body, Endpoint endpoint);

// Text of each token as the client sees it (a StreamDecoder's output per token; special tokens
// skipped), so the pieces of a sequence join to its text.
std::vector<std::string> token_texts(const Tokenizer& tok, const std::vector<int32_t>& ids);

// The logprobs objects. `texts` are token_texts of the same tokens.
nlohmann::json chat_logprobs(const Tokenizer& tok, const std::vector<GeneratedToken>& tokens,
                             const std::vector<std::string>& texts);
// Completions' {tokens, token_logprobs, top_logprobs, text_offset}; `first_null` makes the first
// entry's logprob null (the first prompt token has none). text_offset counts from `offset0`.
nlohmann::json completion_logprobs(const Tokenizer& tok, const std::vector<GeneratedToken>& tokens,
                                   const std::vector<std::string>& texts, bool first_null, size_t offset0);

nlohmann::json usage_json(int prompt_tokens, int completion_tokens);


}  // namespace upg::server
