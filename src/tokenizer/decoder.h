// tokenizer.json "decoder", reduced to what decoding needs: the raw bytes of each token and how
// many leading spaces to drop from the start of the decoded text. Supported: ByteLevel,
// ByteFallback (<0xNN> -> byte), Replace (String pattern), Fuse (no-op on bytes), Strip (of ' '),
// Metaspace (▁ -> ' ', drops the first leading space unless prepend_scheme is never), Sequence.
#pragma once
#include <cstddef>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace upg {

struct DecodeRules {
  bool byte_level = false;     // token text is in the GPT-2 byte alphabet
  bool byte_fallback = false;  // "<0xNN>" tokens are single bytes
  std::vector<std::pair<std::string, std::string>> replace;  // applied in order to each token
  size_t strip_left = 0;   // leading ' ' removed from the start of a decoded text
  size_t strip_right = 0;  // trailing ' ' removed from the end (decode() only, not streaming)
};

DecodeRules parse_decoder(const nlohmann::json& j);

// Raw bytes of one vocabulary token under these rules.
std::string token_bytes(const DecodeRules& rules, const std::string& token);

}  // namespace upg
