// PCRE2 wrapper for the pre-tokenizer patterns of tokenizer.json (\p{L}, \p{N}, (?!\S), (?i:..)).
// Compiled with PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF: the subject may be any bytes;
// bytes that are not valid UTF-8 never match any pattern item, so they end up in the gaps
// between matches and are kept (text round-trips). JIT-compiled when available. Thread-safe:
// match data is allocated per call.
#pragma once
#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace upg {

class Regex {
 public:
  // Throws Error naming `what` and the pattern when it does not compile.
  Regex(const std::string& pattern, std::string_view what);

  // Non-empty, non-overlapping matches of the pattern in s as [begin, end) byte offsets, in order.
  // If the engine gives up (match limit), the rest of s from that point is left unmatched.
  std::vector<std::pair<size_t, size_t>> find_all(std::string_view s) const;

  const std::string& pattern() const { return pattern_; }

 private:
  struct Code;
  std::string pattern_;
  std::shared_ptr<const Code> code_;
};

}  // namespace upg
