#include "tokenizer/byte_level.h"

#include <array>

#include "tokenizer/utf8.h"

namespace upg::byte_level {
namespace {

struct Tables {
  std::array<uint32_t, 256> to_char{};
  std::array<int16_t, 512> to_byte{};  // indexed by code point < 512; -1 = not in alphabet
  std::array<std::string, 256> utf8;   // UTF-8 text of to_char[b]
  Tables() {
    to_byte.fill(-1);
    uint32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool self = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
      to_char[b] = self ? static_cast<uint32_t>(b) : next++;
      to_byte[to_char[b]] = static_cast<int16_t>(b);
      utf8::append(utf8[b], to_char[b]);
    }
  }
};

const Tables& tables() {
  static const Tables t;
  return t;
}

}  // namespace

uint32_t byte_to_char(uint8_t b) { return tables().to_char[b]; }

std::optional<uint8_t> char_to_byte(uint32_t cp) {
  if (cp >= 512 || tables().to_byte[cp] < 0) return std::nullopt;
  return static_cast<uint8_t>(tables().to_byte[cp]);
}

std::string encode(std::string_view raw) {
  const Tables& t = tables();
  std::string out;
  out.reserve(raw.size() * 2);
  for (char c : raw) out += t.utf8[static_cast<uint8_t>(c)];
  return out;
}

std::optional<std::string> decode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    const utf8::Char c = utf8::decode(s, i);
    if (!c.valid) return std::nullopt;
    const auto b = char_to_byte(c.cp);
    if (!b) return std::nullopt;
    out += static_cast<char>(*b);
    i += c.len;
  }
  return out;
}

}  // namespace upg::byte_level
