#include "tokenizer/pretokenizer.h"

#include <nlohmann/json.hpp>
#include <algorithm>
#include <utility>

#include "base/error.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/regex.h"
#include "tokenizer/utf8.h"

namespace upg {

const char* const kGpt2SplitRegex = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

namespace {

using nlohmann::json;

enum class Behavior { Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous };

Behavior parse_behavior(const std::string& b) {
  if (b == "Removed") return Behavior::Removed;
  if (b == "Isolated") return Behavior::Isolated;
  if (b == "MergedWithPrevious") return Behavior::MergedWithPrevious;
  if (b == "MergedWithNext") return Behavior::MergedWithNext;
  if (b == "Contiguous") return Behavior::Contiguous;
  throw Error(str_cat("tokenizer.json: unknown Split behavior '", b, "'"));
}

struct Span {
  size_t b, e;
  bool delim;
};

// Splits one piece at the delimiter spans `matches` (sorted, non-overlapping, non-empty),
// following the Hugging Face tokenizers semantics of each behavior.
void split_piece(const PreToken& piece, const std::vector<std::pair<size_t, size_t>>& matches, Behavior behavior,
                 bool invert, std::vector<PreToken>& out) {
  const std::string& s = piece.text;
  std::vector<Span> spans;
  size_t prev = 0;
  for (auto [b, e] : matches) {
    if (b > prev) spans.push_back({prev, b, invert});
    spans.push_back({b, e, !invert});
    prev = e;
  }
  if (prev < s.size()) spans.push_back({prev, s.size(), invert});

  std::vector<Span> res;
  bool prev_delim = false;
  switch (behavior) {
    case Behavior::Isolated:
      res = spans;
      break;
    case Behavior::Removed:
      for (const Span& sp : spans)
        if (!sp.delim) res.push_back(sp);
      break;
    case Behavior::MergedWithPrevious:
      for (const Span& sp : spans) {
        if (sp.delim && !prev_delim && !res.empty()) res.back().e = sp.e;
        else res.push_back(sp);
        prev_delim = sp.delim;
      }
      break;
    case Behavior::MergedWithNext:
      for (size_t k = spans.size(); k-- > 0;) {
        const Span& sp = spans[k];
        if (sp.delim && !prev_delim && !res.empty()) res.back().b = sp.b;
        else res.push_back(sp);
        prev_delim = sp.delim;
      }
      std::reverse(res.begin(), res.end());
      break;
    case Behavior::Contiguous:
      for (size_t k = 0; k < spans.size(); ++k) {
        if (k > 0 && spans[k].delim == prev_delim) res.back().e = spans[k].e;
        else res.push_back(spans[k]);
        prev_delim = spans[k].delim;
      }
      break;
  }
  for (const Span& sp : res)
    if (sp.e > sp.b) out.push_back({s.substr(sp.b, sp.e - sp.b), piece.at_input_start && sp.b == 0});
}

class SplitPre : public PreTokenizer {
 public:
  SplitPre(std::unique_ptr<Regex> re, std::string literal, Behavior b, bool invert)
      : re_(std::move(re)), literal_(std::move(literal)), behavior_(b), invert_(invert) {}
  void apply(std::vector<PreToken>& pieces) const override {
    std::vector<PreToken> out;
    out.reserve(pieces.size() * 2);
    for (const PreToken& p : pieces) split_piece(p, matches(p.text), behavior_, invert_, out);
    pieces = std::move(out);
  }

 private:
  std::vector<std::pair<size_t, size_t>> matches(const std::string& s) const {
    if (re_) return re_->find_all(s);
    std::vector<std::pair<size_t, size_t>> m;
    if (literal_.empty()) return m;
    for (size_t pos = 0, hit; (hit = s.find(literal_, pos)) != std::string::npos; pos = hit + literal_.size())
      m.emplace_back(hit, hit + literal_.size());
    return m;
  }
  std::unique_ptr<Regex> re_;
  std::string literal_;
  Behavior behavior_;
  bool invert_;
};

class ByteLevelPre : public PreTokenizer {
 public:
  ByteLevelPre(bool add_prefix_space, bool use_regex)
      : add_prefix_space_(add_prefix_space),
        re_(use_regex ? std::make_unique<Regex>(kGpt2SplitRegex, "ByteLevel pre-tokenizer") : nullptr) {}
  void apply(std::vector<PreToken>& pieces) const override {
    std::vector<PreToken> split;
    for (PreToken& p : pieces) {
      if (add_prefix_space_ && (p.text.empty() || p.text[0] != ' ')) p.text = std::string(1, ' ').append(p.text);
      if (re_) split_piece(p, re_->find_all(p.text), Behavior::Isolated, false, split);
      else if (!p.text.empty()) split.push_back(std::move(p));
    }
    for (PreToken& p : split) p.text = byte_level::encode(p.text);
    pieces = std::move(split);
  }
  bool byte_level() const override { return true; }

 private:
  bool add_prefix_space_;
  std::unique_ptr<Regex> re_;
};

class MetaspacePre : public PreTokenizer {
 public:
  enum class Prepend { Always, First, Never };
  MetaspacePre(std::string rep, Prepend prepend, bool split) : rep_(std::move(rep)), prepend_(prepend), split_(split) {}
  void apply(std::vector<PreToken>& pieces) const override {
    std::vector<PreToken> out;
    for (PreToken& p : pieces) {
      std::string t;
      for (char c : p.text) {
        if (c == ' ') t += rep_;
        else t += c;
      }
      const bool starts = t.compare(0, rep_.size(), rep_) == 0;
      if (!starts && (prepend_ == Prepend::Always || (prepend_ == Prepend::First && p.at_input_start)))
        t.insert(0, rep_);
      PreToken q{std::move(t), p.at_input_start};
      if (!split_) {
        if (!q.text.empty()) out.push_back(std::move(q));
        continue;
      }
      std::vector<std::pair<size_t, size_t>> m;
      for (size_t pos = 0, hit; (hit = q.text.find(rep_, pos)) != std::string::npos; pos = hit + rep_.size())
        m.emplace_back(hit, hit + rep_.size());
      split_piece(q, m, Behavior::MergedWithNext, false, out);
    }
    pieces = std::move(out);
  }

 private:
  std::string rep_;
  Prepend prepend_;
  bool split_;
};

class SequencePre : public PreTokenizer {
 public:
  explicit SequencePre(std::vector<std::unique_ptr<PreTokenizer>> parts) : parts_(std::move(parts)) {}
  void apply(std::vector<PreToken>& pieces) const override {
    for (const auto& p : parts_) p->apply(pieces);
  }
  bool byte_level() const override {
    for (const auto& p : parts_)
      if (p->byte_level()) return true;
    return false;
  }

 private:
  std::vector<std::unique_ptr<PreTokenizer>> parts_;
};

std::unique_ptr<PreTokenizer> regex_split(const std::string& re, Behavior b, bool invert, const char* what) {
  return std::make_unique<SplitPre>(std::make_unique<Regex>(re, what), "", b, invert);
}

}  // namespace

std::unique_ptr<PreTokenizer> make_pretokenizer(const json& j) {
  if (j.is_null()) return nullptr;
  UPG_CHECK(j.is_object() && j.contains("type") && j["type"].is_string(),
            "tokenizer.json: pre_tokenizer must be an object with a string \"type\", found ", j.dump().substr(0, 200));
  const std::string type = j["type"];
  if (type == "Sequence") {
    std::vector<std::unique_ptr<PreTokenizer>> parts;
    for (const auto& p : j.at("pretokenizers"))
      if (auto n = make_pretokenizer(p)) parts.push_back(std::move(n));
    return std::make_unique<SequencePre>(std::move(parts));
  }
  if (type == "Split") {
    const json& pat = j.at("pattern");
    const Behavior b = parse_behavior(j.at("behavior").get<std::string>());
    const bool invert = j.value("invert", false);
    if (pat.contains("Regex")) return regex_split(pat["Regex"].get<std::string>(), b, invert, "pre_tokenizer Split");
    if (pat.contains("String")) return std::make_unique<SplitPre>(nullptr, pat["String"].get<std::string>(), b, invert);
    throw Error(str_cat("tokenizer.json: Split pattern must have String or Regex, found ", pat.dump()));
  }
  if (type == "ByteLevel") return std::make_unique<ByteLevelPre>(j.value("add_prefix_space", false), j.value("use_regex", true));
  if (type == "Metaspace") {
    std::string rep = j.value("replacement", std::string("\xE2\x96\x81"));
    MetaspacePre::Prepend prepend = MetaspacePre::Prepend::Always;
    if (j.contains("prepend_scheme") && j["prepend_scheme"].is_string()) {
      const std::string s = j["prepend_scheme"];
      if (s == "first") prepend = MetaspacePre::Prepend::First;
      else if (s == "never") prepend = MetaspacePre::Prepend::Never;
      else if (s != "always") throw Error(str_cat("tokenizer.json: unknown Metaspace prepend_scheme '", s, "'"));
    } else if (!j.value("add_prefix_space", true)) {
      prepend = MetaspacePre::Prepend::Never;
    }
    return std::make_unique<MetaspacePre>(rep, prepend, j.value("split", true));
  }
  if (type == "Digits")
    return regex_split(j.value("individual_digits", false) ? R"(\p{N})" : R"(\p{N}+)", Behavior::Isolated, false,
                       "pre_tokenizer Digits");
  if (type == "Whitespace") return regex_split(R"(\w+|[^\w\s]+)", Behavior::Removed, true, "pre_tokenizer Whitespace");
  if (type == "WhitespaceSplit") return regex_split(R"(\s+)", Behavior::Removed, false, "pre_tokenizer WhitespaceSplit");
  throw Error(str_cat("tokenizer.json: unsupported pre_tokenizer type '", type,
                      "' (supported: Sequence, Split, ByteLevel, Metaspace, Digits, Whitespace, WhitespaceSplit)"));
}

}  // namespace upg
