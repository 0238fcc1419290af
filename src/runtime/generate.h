// The generation loop: prompt -> prefill (one batched forward) -> sample/decode token by token,
// streaming valid UTF-8 text to a callback, stopping on an EOS id, a stop string or the token limit.
#pragma once
#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "runtime/sampler.h"
#include "runtime/text_stream.h"

namespace upg {

class Session;
class Tokenizer;

struct GenerateOptions {
  int max_new_tokens = 128;
  SamplingParams sampling;
  std::vector<std::string> stop_strings;  // generation ends before the first occurrence of any
  bool stop_at_eos = true;
};

struct GenerateStats {
  int prompt_tokens = 0;
  int generated_tokens = 0;
  double prefill_seconds = 0;
  double decode_seconds = 0;
  std::string stop_reason;  // "eos", "stop string", "length", "context full"
  double prompt_tokens_per_second() const;
  double generation_tokens_per_second() const;
};

// Appends `prompt_ids` to the session (which may already hold earlier turns) and generates.
// `on_text` receives each new piece of text as soon as it is complete UTF-8 and cannot be part of a
// stop string; return false from it to stop early. Returns the generated token ids.
std::vector<int32_t> generate(Session& session, const Tokenizer& tok, const std::vector<int32_t>& prompt_ids,
                              const GenerateOptions& opt, const std::function<bool(const std::string&)>& on_text,
                              GenerateStats* stats = nullptr);

}  // namespace upg
