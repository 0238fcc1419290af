#include "runtime/text_stream.h"

#include <algorithm>

#include "base/error.h"

namespace upg {

size_t stop_string_holdback(const std::string& text, const std::vector<std::string>& stops) {
  size_t hold = 0;
  for (const auto& s : stops) {
    for (size_t k = std::min(s.size() - 1, text.size()); k > hold; --k) {
      if (text.compare(text.size() - k, k, s, 0, k) == 0) {
        hold = k;
        break;
      }
    }
  }
  return hold;
}

TextStream::TextStream(const Tokenizer& tok, std::vector<std::string> stop_strings)
    : dec_(tok, /*skip_special=*/true), stops_(std::move(stop_strings)) {
  for (const auto& s : stops_) UPG_CHECK(!s.empty(), "a stop string is empty");
}

std::string TextStream::release(bool final) {
  size_t cut = std::string::npos;
  for (const auto& s : stops_) cut = std::min(cut, pending_.find(s));
  if (cut != std::string::npos) {
    std::string out = pending_.substr(0, cut);
    pending_.clear();
    stopped_ = true;
    return out;
  }
  const size_t hold = final ? 0 : stop_string_holdback(pending_, stops_);
  std::string out = pending_.substr(0, pending_.size() - hold);
  pending_.erase(0, pending_.size() - hold);
  return out;
}

std::string TextStream::push(int32_t id) {
  if (stopped_) return {};
  pending_ += dec_.push(id);
  return release(false);
}

std::string TextStream::finish() {
  if (stopped_) return {};
  pending_ += dec_.flush();
  return release(true);
}

}  // namespace upg
