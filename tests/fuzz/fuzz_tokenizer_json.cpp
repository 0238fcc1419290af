// libFuzzer target for tokenizer.json: the BPE model (vocab, merges, unk/byte fallback), the
// normalizers, pre-tokenizers (PCRE2 patterns included), decoders, post-processors and added
// tokens. The input is the tokenizer.json text (no tokenizer_config / generation_config). A
// tokenizer that loads then encodes and decodes a fixed probe text (fuzz_util.h). Every problem
// must surface as upg::Error.
#include <cstdint>

#include "base/error.h"
#include "fuzz_util.h"
#include "tokenizer/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const upg::Tokenizer tok = upg::Tokenizer::from_json_strings(upg::fuzz::as_text(data, size));
    upg::fuzz::exercise_tokenizer(tok);
  } catch (const upg::Error&) {
  }
  return 0;
}
