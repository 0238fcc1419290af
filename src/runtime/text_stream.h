// Generated token ids -> the text a client sees, piece by piece: incremental UTF-8 decoding
// (StreamDecoder, special tokens skipped) and stop strings. Text that could be the start of a stop
// string is held back until it cannot be; when a stop string completes, the text before it is the
// last piece and stopped() turns true. Used by generate() and the batch scheduler alike.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace upg {

class TextStream {
 public:
  // Throws Error when a stop string is empty.
  TextStream(const Tokenizer& tok, std::vector<std::string> stop_strings);
  // The text that became final with this token ("" if none). After a stop string completed,
  // further pushes return "".
  std::string push(int32_t id);
  // What is left at the end of generation (held-back text, a trailing partial character as U+FFFD).
  std::string finish();
  bool stopped() const { return stopped_; }

 private:
  std::string release(bool final);
  StreamDecoder dec_;
  std::vector<std::string> stops_;
  std::string pending_;  // decoded, not yet released (may be the start of a stop string)
  bool stopped_ = false;
};

// Length of the longest suffix of `text` that is a proper prefix of some stop string: that much
// text must be held back until more arrives.
size_t stop_string_holdback(const std::string& text, const std::vector<std::string>& stops);

}  // namespace upg
