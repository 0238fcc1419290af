#include "tokenizer/added_tokens.h"

#include <algorithm>

#include "tokenizer/utf8.h"

namespace upg {
namespace {

// Start of the last character of s[0, end) (end > 0).
size_t last_char_start(std::string_view s, size_t end) {
  size_t i = end - 1;
  while (i > 0 && end - i < 4 && (static_cast<uint8_t>(s[i]) & 0xC0) == 0x80) --i;
  const utf8::Char c = utf8::decode(s, i);
  return (c.valid && i + c.len == end) ? i : end - 1;
}

bool word_char_before(std::string_view s, size_t pos) {
  if (pos == 0) return false;
  const utf8::Char c = utf8::decode(s, last_char_start(s, pos));
  return c.valid && utf8::is_alphanumeric(c.cp);
}

bool word_char_after(std::string_view s, size_t pos) {
  if (pos >= s.size()) return false;
  const utf8::Char c = utf8::decode(s, pos);
  return c.valid && utf8::is_alphanumeric(c.cp);
}

}  // namespace

AddedTokenMatcher::AddedTokenMatcher(std::vector<AddedToken> tokens) : tokens_(std::move(tokens)) {
  trie_.emplace_back();
  std::fill(std::begin(trie_[0].child), std::end(trie_[0].child), -1);
  for (size_t t = 0; t < tokens_.size(); ++t) {
    const std::string& c = tokens_[t].content;
    if (c.empty()) continue;
    first_byte_[static_cast<uint8_t>(c[0])] = true;
    int32_t node = 0;
    for (char ch : c) {
      const auto b = static_cast<uint8_t>(ch);
      if (trie_[node].child[b] < 0) {
        trie_[node].child[b] = static_cast<int32_t>(trie_.size());
        trie_.emplace_back();
        std::fill(std::begin(trie_.back().child), std::end(trie_.back().child), -1);
      }
      node = trie_[node].child[b];
    }
    if (trie_[node].token < 0) trie_[node].token = static_cast<int32_t>(t);  // first listed wins
  }
}

std::vector<Segment> AddedTokenMatcher::split(std::string_view s) const {
  std::vector<Segment> out;
  if (s.empty()) return out;
  size_t text_start = 0;  // start of the pending text segment
  size_t pos = 0;
  while (pos < s.size()) {
    if (!first_byte_[static_cast<uint8_t>(s[pos])]) {
      ++pos;
      continue;
    }
    // Longest token starting at pos.
    int32_t best = -1;
    size_t best_len = 0;
    int32_t node = 0;
    for (size_t k = pos; k < s.size(); ++k) {
      node = trie_[node].child[static_cast<uint8_t>(s[k])];
      if (node < 0) break;
      if (trie_[node].token >= 0) best = trie_[node].token, best_len = k + 1 - pos;
    }
    if (best < 0) {
      ++pos;
      continue;
    }
    const AddedToken& t = tokens_[best];
    size_t start = pos, stop = pos + best_len;
    if (t.single_word && (word_char_before(s, start) || word_char_after(s, stop))) {
      ++pos;
      continue;
    }
    if (t.lstrip) {
      while (start > text_start) {
        const size_t cs = last_char_start(s, start);
        const utf8::Char c = utf8::decode(s, cs);
        if (!c.valid || cs + c.len != start || !utf8::is_whitespace(c.cp)) break;
        start = cs;
      }
    }
    if (t.rstrip) {
      while (stop < s.size()) {
        const utf8::Char c = utf8::decode(s, stop);
        if (!c.valid || !utf8::is_whitespace(c.cp)) break;
        stop += c.len;
      }
    }
    if (start > text_start) out.push_back({text_start, start, -1});
    out.push_back({start, stop, t.id});
    text_start = pos = stop;
  }
  if (text_start < s.size()) out.push_back({text_start, s.size(), -1});
  return out;
}

}  // namespace upg
