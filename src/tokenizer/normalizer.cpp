#include "tokenizer/normalizer.h"

#include <unicode/normalizer2.h>
#include <unicode/unistr.h>
#include <unicode/ustring.h>

#include <nlohmann/json.hpp>
#include <vector>

#include "base/error.h"
#include "tokenizer/regex.h"
#include "tokenizer/utf8.h"

namespace upg {
namespace {

using nlohmann::json;

class SequenceNormalizer : public Normalizer {
 public:
  explicit SequenceNormalizer(std::vector<std::unique_ptr<Normalizer>> parts) : parts_(std::move(parts)) {}
  void apply(std::string& s) const override {
    for (const auto& p : parts_) p->apply(s);
  }

 private:
  std::vector<std::unique_ptr<Normalizer>> parts_;
};

// Prepend: adds a prefix to every non-empty segment (Llama-2 legacy: "▁").
class PrependNormalizer : public Normalizer {
 public:
  explicit PrependNormalizer(std::string p) : prefix_(std::move(p)) {}
  void apply(std::string& s) const override {
    if (!s.empty()) s.insert(0, prefix_);
  }

 private:
  std::string prefix_;
};

void replace_all(std::string& s, const std::string& from, const std::string& to) {
  if (from.empty() || s.find(from) == std::string::npos) return;
  std::string out;
  out.reserve(s.size());
  size_t pos = 0;
  for (size_t hit; (hit = s.find(from, pos)) != std::string::npos; pos = hit + from.size()) {
    out.append(s, pos, hit - pos);
    out += to;
  }
  out.append(s, pos);
  s = std::move(out);
}

class ReplaceNormalizer : public Normalizer {
 public:
  ReplaceNormalizer(std::string from, std::unique_ptr<Regex> re, std::string to)
      : from_(std::move(from)), re_(std::move(re)), to_(std::move(to)) {}
  void apply(std::string& s) const override {
    if (!re_) return replace_all(s, from_, to_);
    std::string out;
    size_t pos = 0;
    for (auto [b, e] : re_->find_all(s)) {
      out.append(s, pos, b - pos);
      out += to_;
      pos = e;
    }
    out.append(s, pos);
    s = std::move(out);
  }

 private:
  std::string from_;
  std::unique_ptr<Regex> re_;
  std::string to_;
};

class StripNormalizer : public Normalizer {
 public:
  StripNormalizer(bool left, bool right) : left_(left), right_(right) {}
  void apply(std::string& s) const override {
    size_t b = 0, e = s.size();
    if (left_) {
      while (b < e) {
        const utf8::Char c = utf8::decode(s, b);
        if (!c.valid || !utf8::is_whitespace(c.cp)) break;
        b += c.len;
      }
    }
    if (right_) {
      while (e > b) {  // walk back to the start of the last character
        size_t i = e - 1;
        while (i > b && (static_cast<uint8_t>(s[i]) & 0xC0) == 0x80 && e - i < 4) --i;
        const utf8::Char c = utf8::decode(s, i);
        if (!c.valid || i + c.len != e || !utf8::is_whitespace(c.cp)) break;
        e = i;
      }
    }
    s = s.substr(b, e - b);
  }

 private:
  bool left_, right_;
};

// Applies fn to each maximal run of valid UTF-8 (as UTF-16), leaving invalid bytes untouched.
template <class Fn>
void map_valid_runs(std::string& s, Fn fn) {
  if (utf8::is_valid(s) && [&] {
        for (char c : s)
          if (static_cast<uint8_t>(c) >= 0x80) return false;
        return true;
      }()) {
    fn(s);  // ASCII fast path still goes through fn (Lowercase needs it)
    return;
  }
  std::string out, run;
  auto flush = [&] {
    if (!run.empty()) {
      fn(run);
      out += run;
      run.clear();
    }
  };
  for (size_t i = 0; i < s.size();) {
    const utf8::Char c = utf8::decode(s, i);
    if (c.valid) {
      run.append(s, i, c.len);
    } else {
      flush();
      out += s[i];
    }
    i += c.len;
  }
  flush();
  s = std::move(out);
}

class UnicodeNormalizer : public Normalizer {
 public:
  UnicodeNormalizer(const icu::Normalizer2* n, bool lower) : n_(n), lower_(lower) {}
  void apply(std::string& s) const override {
    map_valid_runs(s, [&](std::string& run) {
      if (!lower_) {
        bool ascii = true;
        for (char c : run) ascii = ascii && static_cast<uint8_t>(c) < 0x80;
        if (ascii) return;  // ASCII is invariant under every normalization form
      }
      icu::UnicodeString u = icu::UnicodeString::fromUTF8(run);
      if (lower_) {
        u.toLower();
      } else {
        UErrorCode st = U_ZERO_ERROR;
        icu::UnicodeString r = n_->normalize(u, st);
        if (U_FAILURE(st)) throw Error(str_cat("normalizer: ICU normalization failed: ", u_errorName(st)));
        u = std::move(r);
      }
      run.clear();
      u.toUTF8String(run);
    });
  }

 private:
  const icu::Normalizer2* n_;
  bool lower_;
};

const icu::Normalizer2* icu_form(const std::string& type) {
  UErrorCode st = U_ZERO_ERROR;
  const icu::Normalizer2* n = nullptr;
  if (type == "NFC") n = icu::Normalizer2::getNFCInstance(st);
  if (type == "NFD") n = icu::Normalizer2::getNFDInstance(st);
  if (type == "NFKC") n = icu::Normalizer2::getNFKCInstance(st);
  if (type == "NFKD") n = icu::Normalizer2::getNFKDInstance(st);
  UPG_CHECK(n && U_SUCCESS(st), "normalizer ", type, ": ICU data not available (", u_errorName(st), ")");
  return n;
}

}  // namespace

std::unique_ptr<Normalizer> make_normalizer(const json& j) {
  if (j.is_null()) return nullptr;
  UPG_CHECK(j.is_object() && j.contains("type") && j["type"].is_string(),
            "tokenizer.json: normalizer must be an object with a string \"type\", found ", j.dump().substr(0, 200));
  const std::string type = j["type"];
  if (type == "Sequence") {
    std::vector<std::unique_ptr<Normalizer>> parts;
    for (const auto& p : j.at("normalizers"))
      if (auto n = make_normalizer(p)) parts.push_back(std::move(n));
    return std::make_unique<SequenceNormalizer>(std::move(parts));
  }
  if (type == "Prepend") return std::make_unique<PrependNormalizer>(j.at("prepend").get<std::string>());
  if (type == "Replace") {
    const json& pat = j.at("pattern");
    std::string to = j.at("content").get<std::string>();
    if (pat.contains("String")) return std::make_unique<ReplaceNormalizer>(pat["String"].get<std::string>(), nullptr, to);
    if (pat.contains("Regex"))
      return std::make_unique<ReplaceNormalizer>(
          "", std::make_unique<Regex>(pat["Regex"].get<std::string>(), "normalizer Replace"), to);
    throw Error(str_cat("tokenizer.json: normalizer Replace pattern must have String or Regex, found ", pat.dump()));
  }
  if (type == "Strip")
    return std::make_unique<StripNormalizer>(j.value("strip_left", true), j.value("strip_right", true));
  if (type == "Lowercase") return std::make_unique<UnicodeNormalizer>(nullptr, true);
  if (type == "NFC" || type == "NFD" || type == "NFKC" || type == "NFKD")
    return std::make_unique<UnicodeNormalizer>(icu_form(type), false);
  throw Error(str_cat("tokenizer.json: unsupported normalizer type '", type,
                      "' (supported: Sequence, Prepend, Replace, Strip, Lowercase, NFC, NFD, NFKC, NFKD)"));
}

}  // namespace upg
