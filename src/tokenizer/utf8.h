// UTF-8 helpers for the tokenizer. Input text is arbitrary bytes: every function here accepts
// invalid UTF-8 and treats each byte that does not start a valid sequence as a one-byte "char".
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace upg::utf8 {

// One decoded character at a byte offset: cp is the code point (or the raw byte when !valid),
// len is 1..4 bytes. Valid means shortest-form, not a surrogate, at most U+10FFFF.
struct Char {
  uint32_t cp;
  uint32_t len;
  bool valid;
};

// Decodes the character starting at s[i] (i < s.size()).
Char decode(std::string_view s, size_t i);

// Appends the UTF-8 encoding of code point cp (cp <= 0x10FFFF).
void append(std::string& out, uint32_t cp);

// True when every byte of s belongs to a valid sequence.
bool is_valid(std::string_view s);

// Number of bytes (0..3) at the end of s that are a valid but incomplete prefix of a multi-byte
// character: a streaming consumer must wait for more bytes before emitting them.
size_t incomplete_tail(std::string_view s);

// Copy of s with every invalid byte replaced by U+FFFD (always valid UTF-8).
std::string sanitize(std::string_view s);

// Unicode White_Space property (what Rust's char::is_whitespace tests).
bool is_whitespace(uint32_t cp);

// Letter or number (Rust's char::is_alphanumeric: Alphabetic or general category N*).
bool is_alphanumeric(uint32_t cp);

}  // namespace upg::utf8
