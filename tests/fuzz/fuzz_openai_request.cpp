// libFuzzer target for the server's request parser (src/server/openai_protocol.cpp): the JSON
// bodies of /v1/chat/completions and /v1/completions. The first input byte picks the endpoint
// (even: chat, odd: completions), the rest is the body. A body must either parse or be refused
// with ApiError (the server's 4xx answer) or upg::Error; anything else is a bug.
#include <cstdint>
#include <string>

#include "base/error.h"
#include "fuzz_util.h"
#include "server/openai_protocol.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const auto endpoint = (data[0] & 1) ? upg::server::Endpoint::Completion : upg::server::Endpoint::Chat;
  try {
    const upg::server::ApiRequest r = upg::server::parse_request(std::string(upg::fuzz::as_text(data + 1, size - 1)), endpoint);
    (void)r.messages.dump();
  } catch (const upg::server::ApiError& e) {
    (void)upg::server::error_body(e);
  } catch (const upg::Error&) {
  }
  return 0;
}
