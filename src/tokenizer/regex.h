// PCRE2 wrapper for the pre-tokenizer patterns of tokenizer.json (\p{L}, \p{N}, (?!\S), (?i:..)).
// Compiled with PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF: the subject may be any bytes;
// bytes that are not valid UTF-8 never match any pattern item, so they end up in the gaps
// between matches and are kept (text round-trips). JIT-compiled when available. Thread-safe:
// match data is allocated per call.
#pragma once
#include <cstddef>
#include <cstdint>
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

  // Limits on one match attempt, so that a hostile pattern (catastrophic backtracking) fails
  // quickly instead of hanging: backtracking steps, nesting depth, heap for the interpreter.
  static constexpr uint32_t kMatchLimit = 10'000'000;
  static constexpr uint32_t kDepthLimit = 1'000'000;
  static constexpr uint32_t kHeapLimitKiB = 256 * 1024;

  // Non-empty, non-overlapping matches of the pattern in s as [begin, end) byte offsets, in order.
  // Throws Error naming the pattern when the engine fails (a limit above reached, ...): a failure
  // is never taken for "no match".
  std::vector<std::pair<size_t, size_t>> find_all(std::string_view s) const;

  const std::string& pattern() const { return pattern_; }

 private:
  struct Code;
  std::string pattern_;
  std::shared_ptr<const Code> code_;
};

}  // namespace upg
