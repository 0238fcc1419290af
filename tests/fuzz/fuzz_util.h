// Helpers shared by the libFuzzer targets (tests/fuzz/fuzz_*.cpp).
//
// Contract of every target: any input either parses or fails with upg::Error (the targets catch
// exactly that); anything else (another exception type reaching libFuzzer, a crash, an ASan or
// leak report, a timeout) is a bug.
#pragma once
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace upg::fuzz {

// An in-memory file (memfd) readers can open by path: /proc/self/fd/N.
class MemFile {
 public:
  MemFile() {
    fd_ = ::memfd_create("upg_fuzz", 0);
    if (fd_ < 0) std::abort();
    path_ = "/proc/self/fd/" + std::to_string(fd_);
  }
  const std::string& write(const uint8_t* data, size_t size) {
    if (::ftruncate(fd_, 0) != 0) std::abort();
    if (size && ::pwrite(fd_, data, size, 0) != static_cast<ssize_t>(size)) std::abort();
    return path_;
  }

 private:
  int fd_ = -1;
  std::string path_;
};

inline std::string_view as_text(const uint8_t* data, size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

// Text that reaches the tokenizer's corners: ASCII words, digits, punctuation, whitespace runs,
// multi-byte UTF-8, SentencePiece's U+2581, common special-token spellings and invalid UTF-8.
inline constexpr std::string_view kProbeText =
    "Hello, world! It's 2024: 12345 tokens.\n\n\t  spaces   <|endoftext|><s></s><|im_start|>user "
    "caf\xC3\xA9 \xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E \xE2\x96\x81x \xF0\x9F\x98\x80 \xFF\xFE bad \xC3";

// Exercises a loaded tokenizer: encode with and without special tokens, decode both ways, token
// pieces and special flags of the first ids.
inline void exercise_tokenizer(const Tokenizer& tok) {
  for (bool special : {false, true}) {
    const std::vector<int32_t> ids = tok.encode(kProbeText, special);
    (void)tok.decode(ids, false);
    (void)tok.decode(ids, true);
    StreamDecoder sd(tok, special);
    for (int32_t id : ids) (void)sd.push(id);
    (void)sd.flush();
  }
  const int32_t n = tok.vocab_size() < 64 ? tok.vocab_size() : 64;
  for (int32_t id = 0; id < n; ++id) {
    (void)tok.token_piece(id);
    (void)tok.is_special(id);
  }
  (void)tok.bos_token();
  (void)tok.eos_token();
  (void)tok.add_bos();
}

}  // namespace upg::fuzz
