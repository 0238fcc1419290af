// GPT-2 byte-level alphabet: every byte 0..255 is shown as one printable Unicode character so
// that a BPE vocabulary over bytes can be stored as JSON text. Bytes 33..126, 161..172 and
// 174..255 map to themselves; the other 68 bytes map to U+0100.. in increasing byte order
// (space 0x20 -> U+0120 'Ġ', newline 0x0A -> U+010A 'Ċ').
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace upg::byte_level {

// Code point that stands for byte b.
uint32_t byte_to_char(uint8_t b);

// Byte that code point cp stands for, or nullopt if cp is not in the alphabet.
std::optional<uint8_t> char_to_byte(uint32_t cp);

// Maps every byte of raw to its character (valid UTF-8, 1-2 bytes per input byte).
std::string encode(std::string_view raw);

// Inverse of encode: returns nullopt when s contains a character outside the alphabet.
std::optional<std::string> decode(std::string_view s);

}  // namespace upg::byte_level
