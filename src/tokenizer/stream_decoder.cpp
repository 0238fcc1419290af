#include "base/error.h"
#include "tokenizer/tokenizer_impl.h"
#include "tokenizer/utf8.h"

namespace upg {

StreamDecoder::StreamDecoder(const Tokenizer& tok, bool skip_special)
    : impl_(tok.impl_), skip_special_(skip_special), strip_left_(tok.impl_->decode_rules.strip_left) {}

std::string StreamDecoder::push(int32_t id) {
  impl_->check_id(id);
  if (skip_special_ && impl_->special[id]) return {};
  std::string buf = std::move(pending_);
  pending_.clear();
  buf += impl_->pieces[id];
  size_t b = 0;
  while (strip_left_ > 0 && b < buf.size()) {
    if (buf[b] != ' ') {
      strip_left_ = 0;
      break;
    }
    ++b, --strip_left_;
  }
  const std::string_view rest = std::string_view(buf).substr(b);
  const size_t tail = utf8::incomplete_tail(rest);
  pending_.assign(rest.substr(rest.size() - tail));
  return utf8::sanitize(rest.substr(0, rest.size() - tail));
}

std::string StreamDecoder::flush() {
  std::string out = utf8::sanitize(pending_);
  pending_.clear();
  return out;
}

}  // namespace upg
