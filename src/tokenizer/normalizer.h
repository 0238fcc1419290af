// tokenizer.json "normalizer": rewrites each text segment (the text between added tokens) before
// pre-tokenization. Supported: Sequence, Prepend, Replace (String or Regex pattern), Strip,
// Lowercase, NFC/NFD/NFKC/NFKD (ICU). Unicode normalization only touches valid UTF-8 runs;
// invalid bytes pass through unchanged. Anything else -> Error naming the type.
#pragma once
#include <memory>
#include <string>

#include <nlohmann/json_fwd.hpp>

namespace upg {

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  virtual void apply(std::string& s) const = 0;
};

// Returns nullptr for a JSON null (no normalizer).
std::unique_ptr<Normalizer> make_normalizer(const nlohmann::json& j);

}  // namespace upg
