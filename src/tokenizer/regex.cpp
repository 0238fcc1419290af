#define PCRE2_CODE_UNIT_WIDTH 8
#include "tokenizer/regex.h"

#include <pcre2.h>

#include "base/error.h"
#include "tokenizer/utf8.h"

namespace upg {

struct Regex::Code {
  pcre2_code* code = nullptr;
  pcre2_match_context* ctx = nullptr;  // the match / depth / heap limits
  bool jit = false;
  ~Code() {
    if (ctx) pcre2_match_context_free(ctx);
    if (code) pcre2_code_free(code);
  }
};

namespace {

// The pattern as errors quote it (a hostile one may be huge).
std::string quoted(const std::string& pattern) {
  return pattern.size() <= 200 ? pattern : pattern.substr(0, 200) + "...";
}

std::string pcre2_message(int code) {
  PCRE2_UCHAR buf[256];
  if (pcre2_get_error_message(code, buf, sizeof(buf)) < 0) return str_cat("PCRE2 error ", code);
  return reinterpret_cast<const char*>(buf);
}

}  // namespace

Regex::Regex(const std::string& pattern, std::string_view what) : pattern_(pattern) {
  int err = 0;
  PCRE2_SIZE err_off = 0;
  auto code = std::make_shared<Code>();
  code->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                             PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &err, &err_off, nullptr);
  if (!code->code)
    throw Error(str_cat(what, ": regex pattern '", quoted(pattern), "' does not compile at offset ", err_off, ": ",
                        pcre2_message(err)));
  code->ctx = pcre2_match_context_create(nullptr);
  if (!code->ctx) throw Error("regex: out of memory creating a match context");
  pcre2_set_match_limit(code->ctx, kMatchLimit);
  pcre2_set_depth_limit(code->ctx, kDepthLimit);
  pcre2_set_heap_limit(code->ctx, kHeapLimitKiB);
  code->jit = pcre2_jit_compile(code->code, PCRE2_JIT_COMPLETE) == 0;
  code_ = std::move(code);
}

std::vector<std::pair<size_t, size_t>> Regex::find_all(std::string_view s) const {
  std::vector<std::pair<size_t, size_t>> out;
  pcre2_match_data* md = pcre2_match_data_create_from_pattern(code_->code, nullptr);
  if (!md) throw Error("regex: out of memory creating match data");
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(s.data());
  size_t pos = 0;
  while (pos < s.size()) {
    int rc = pcre2_match(code_->code, subject, s.size(), pos, 0, md, code_->ctx);
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT) {
      // Long runs can exhaust the JIT stack; the interpreter keeps its frames on the heap.
      rc = pcre2_match(code_->code, subject, s.size(), pos, PCRE2_NO_JIT, md, code_->ctx);
    }
    if (rc == PCRE2_ERROR_NOMATCH) break;  // the rest is a gap
    if (rc < 0) {
      pcre2_match_data_free(md);
      throw Error(str_cat("regex pattern '", quoted(pattern_), "' failed on a ", s.size(), "-byte text at byte ", pos,
                          ": ", pcre2_message(rc)));
    }
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
    const size_t b = ov[0], e = ov[1];
    if (e > b) {
      out.emplace_back(b, e);
      pos = e;
    } else {
      pos = b + utf8::decode(s, b < s.size() ? b : s.size() - 1).len;  // skip empty match
    }
  }
  pcre2_match_data_free(md);
  return out;
}

}  // namespace upg
