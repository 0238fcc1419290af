// tokenizer.json "pre_tokenizer": splits a normalized segment into the words that BPE encodes
// independently. Supported: Sequence, Split (String or Regex pattern; behaviors Isolated,
// Removed, MergedWithPrevious, MergedWithNext, Contiguous; invert), ByteLevel (add_prefix_space,
// use_regex with the GPT-2 pattern, then bytes -> GPT-2 alphabet), Metaspace (replacement,
// prepend_scheme always/first/never or legacy add_prefix_space, split), Digits, Whitespace,
// WhitespaceSplit. Anything else -> Error naming the type.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace upg {

struct PreToken {
  std::string text;
  bool at_input_start = false;  // begins at byte 0 of the caller's input (Metaspace "first")
};

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  // Replaces `pieces` with their refinement; empty pieces are dropped.
  virtual void apply(std::vector<PreToken>& pieces) const = 0;
  // True when this step maps bytes to the GPT-2 byte-level alphabet.
  virtual bool byte_level() const { return false; }
};

// Returns nullptr for a JSON null (the whole segment is one word).
std::unique_ptr<PreTokenizer> make_pretokenizer(const nlohmann::json& j);

// The GPT-2 split pattern that ByteLevel uses when use_regex is true.
extern const char* const kGpt2SplitRegex;

}  // namespace upg
