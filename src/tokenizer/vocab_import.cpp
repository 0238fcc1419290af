#include "tokenizer/vocab_import.h"

#include <algorithm>
#include <climits>
#include <unordered_map>

#include "base/error.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/pretokenizer.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"

namespace upg::vocab_import {

using nlohmann::json;

const char* const kCl100kRegex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
const char* const kQwen2Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

namespace {

json byte_level_decoder() {
  return {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true}, {"use_regex", true}};
}

json added_tokens_json(const std::vector<ExtraToken>& added) {
  json a = json::array();
  for (const auto& t : added)
    a.push_back({{"id", t.id}, {"content", t.content}, {"single_word", false}, {"lstrip", false}, {"rstrip", false},
                 {"normalized", !t.special}, {"special", t.special}});
  return a;
}

json template_processing(const std::vector<std::pair<std::string, int32_t>>& before,
                         const std::vector<std::pair<std::string, int32_t>>& after) {
  json single = json::array(), specials = json::object();
  auto add = [&](const std::pair<std::string, int32_t>& t) {
    single.push_back({{"SpecialToken", {{"id", t.first}, {"type_id", 0}}}});
    specials[t.first] = {{"id", t.first}, {"ids", {t.second}}, {"tokens", {t.first}}};
  };
  for (const auto& t : before) add(t);
  single.push_back({{"Sequence", {{"id", "A"}, {"type_id", 0}}}});
  for (const auto& t : after) add(t);
  return {{"type", "TemplateProcessing"}, {"single", single}, {"pair", single}, {"special_tokens", specials}};
}

json bpe_model(json vocab, json merges, bool ignore_merges) {
  return {{"type", "BPE"},         {"dropout", nullptr},       {"unk_token", nullptr},
          {"continuing_subword_prefix", nullptr},              {"end_of_word_suffix", nullptr},
          {"fuse_unk", false},     {"byte_fallback", false},   {"ignore_merges", ignore_merges},
          {"vocab", std::move(vocab)}, {"merges", std::move(merges)}};
}

std::string base64_decode(std::string_view s, size_t line) {
  auto val = [&](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    throw Error(str_cat("tiktoken: line ", line, ": invalid base64 character '", c, "'"));
  };
  std::string out;
  uint32_t acc = 0;
  int bits = 0;
  for (char c : s) {
    if (c == '=') break;
    acc = (acc << 6) | static_cast<uint32_t>(val(c));
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> bits) & 0xFF);
    }
  }
  return out;
}

}  // namespace

json byte_level_pre_tokenizer(const std::vector<std::string>& split_regexes) {
  json parts = json::array();
  for (const auto& r : split_regexes)
    parts.push_back({{"type", "Split"}, {"pattern", {{"Regex", r}}}, {"behavior", "Isolated"}, {"invert", false}});
  parts.push_back({{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", false}});
  return {{"type", "Sequence"}, {"pretokenizers", parts}};
}

std::vector<std::string> llama_cpp_pre_regexes(std::string_view pre) {
  if (pre == "gpt-2" || pre == "gpt2") return {kGpt2SplitRegex};
  if (pre == "llama-bpe" || pre == "llama3" || pre == "llama-v3" || pre == "cl100k") return {kCl100kRegex};
  if (pre == "qwen2" || pre == "deepseek-r1-qwen") return {kQwen2Regex};
  if (pre == "deepseek-coder")
    return {"[\r\n]", R"(\s?\p{L}+)", R"(\s?\p{P}+)", "[\u4E00-\u9FA5\u0800-\u4E00\uAC00-\uD7FF]+", R"(\p{N})"};
  throw Error(str_cat("GGUF: unsupported tokenizer.ggml.pre '", pre, "'"));
}

json tokenizer_json_from_tiktoken(std::string_view text, const std::vector<std::string>& split_regexes,
                                  const std::vector<ExtraToken>& added, std::string_view bos_token) {
  // Parse "base64 rank" lines.
  std::vector<std::pair<std::string, int32_t>> ranked;
  size_t line_no = 0;
  for (size_t pos = 0; pos < text.size();) {
    size_t eol = text.find('\n', pos);
    if (eol == std::string_view::npos) eol = text.size();
    std::string_view line = text.substr(pos, eol - pos);
    pos = eol + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) continue;
    const size_t sp = line.find(' ');
    UPG_CHECK(sp != std::string_view::npos, "tiktoken: line ", line_no, " is not \"<base64> <rank>\"");
    int32_t rank = 0;
    try {
      rank = std::stoi(std::string(line.substr(sp + 1)));
    } catch (const std::exception&) {
      throw Error(str_cat("tiktoken: line ", line_no, ": bad rank '", line.substr(sp + 1), "'"));
    }
    ranked.emplace_back(base64_decode(line.substr(0, sp), line_no), rank);
  }
  std::sort(ranked.begin(), ranked.end(), [](const auto& a, const auto& b) { return a.second < b.second; });
  std::unordered_map<std::string_view, int32_t> rank_of;  // views into `ranked`, which no longer moves
  rank_of.reserve(ranked.size());
  for (const auto& [tok, rank] : ranked) rank_of.emplace(tok, rank);

  json vocab = json::object(), merges = json::array();
  std::vector<size_t> start;    // parts are tok[start[i], start[i+1])
  std::vector<int32_t> pair_rank;  // [i]: rank of parts i and i+1 merged, or INT32_MAX
  for (const auto& entry : ranked) {
    const auto& tok = entry.first;
    const auto rank = entry.second;  // not a structured binding: lambdas below use it (Clang 14)
    vocab[byte_level::encode(tok)] = rank;
    if (tok.size() < 2) continue;
    // BPE over the token's bytes using only tokens ranked below it; a two-part result is its merge.
    const std::string_view t = tok;
    start.resize(tok.size() + 1);
    for (size_t i = 0; i <= tok.size(); ++i) start[i] = i;
    auto rank_at = [&](size_t i) {  // rank of parts i and i+1 merged (start has parts+1 entries)
      auto it = rank_of.find(t.substr(start[i], start[i + 2] - start[i]));
      return it != rank_of.end() && it->second < rank ? it->second : INT32_MAX;
    };
    pair_rank.resize(tok.size() - 1);
    for (size_t i = 0; i + 1 < tok.size(); ++i) pair_rank[i] = rank_at(i);
    while (pair_rank.size() > 0) {
      const size_t at = static_cast<size_t>(std::min_element(pair_rank.begin(), pair_rank.end()) - pair_rank.begin());
      if (pair_rank[at] == INT32_MAX) break;
      start.erase(start.begin() + static_cast<long>(at) + 1);
      pair_rank.erase(pair_rank.begin() + static_cast<long>(at));
      if (at < pair_rank.size()) pair_rank[at] = rank_at(at);
      if (at > 0) pair_rank[at - 1] = rank_at(at - 1);
    }
    if (start.size() == 3)
      merges.push_back({byte_level::encode(t.substr(0, start[1])), byte_level::encode(t.substr(start[1]))});
  }
  std::vector<std::pair<std::string, int32_t>> before;
  for (const auto& t : added)
    if (t.content == bos_token) before.emplace_back(t.content, t.id);
  return {{"version", "1.0"},
          {"added_tokens", added_tokens_json(added)},
          {"normalizer", nullptr},
          {"pre_tokenizer", byte_level_pre_tokenizer(split_regexes)},
          {"post_processor", template_processing(before, {})},
          {"decoder", byte_level_decoder()},
          {"model", bpe_model(std::move(vocab), std::move(merges), true)}};
}

json tokenizer_json_from_vocab_merges(std::string_view vocab_json, std::string_view merges_txt, const json& pre,
                                      const std::vector<ExtraToken>& added, const json& normalizer) {
  json vocab;
  try {
    vocab = json::parse(vocab_json.begin(), vocab_json.end());
  } catch (const json::exception& e) {  // parse_error, or out_of_range for a number like 1E400
    throw Error(str_cat("vocab.json: malformed JSON: ", e.what()));
  }
  UPG_CHECK(vocab.is_object(), "vocab.json: expected an object of token -> id");
  json merges = json::array();
  for (size_t pos = 0; pos < merges_txt.size();) {
    size_t eol = merges_txt.find('\n', pos);
    if (eol == std::string_view::npos) eol = merges_txt.size();
    std::string_view line = merges_txt.substr(pos, eol - pos);
    pos = eol + 1;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty() || line.rfind("#version", 0) == 0) continue;
    merges.push_back(std::string(line));
  }
  return {{"version", "1.0"},
          {"added_tokens", added_tokens_json(added)},
          {"normalizer", normalizer},
          {"pre_tokenizer", pre},
          {"post_processor", nullptr},
          {"decoder", byte_level_decoder()},
          {"model", bpe_model(std::move(vocab), std::move(merges), false)}};
}

namespace {

// Merges of a SentencePiece BPE vocabulary from its scores (transformers' SentencePieceExtractor):
// every split of a piece into two pieces of the vocabulary is a merge; merges are ordered by the
// score of the merged piece (highest first, stable), within a piece by (left id, right id).
json spm_merges(const GgufVocab& v, const std::vector<bool>& mergeable) {
  std::unordered_map<std::string_view, int32_t> id_of;
  for (size_t i = 0; i < v.tokens.size(); ++i)
    if (mergeable[i]) id_of.emplace(v.tokens[i], static_cast<int32_t>(i));
  struct M {
    float score;
    int32_t l, r;
  };
  std::vector<M> all;
  for (size_t i = 0; i < v.tokens.size(); ++i) {
    if (!mergeable[i]) continue;
    const std::string_view t = v.tokens[i];
    std::vector<M> local;
    for (size_t k = utf8::decode(t, 0).len; k < t.size(); k += utf8::decode(t, k).len) {
      auto l = id_of.find(t.substr(0, k)), r = id_of.find(t.substr(k));
      if (l != id_of.end() && r != id_of.end()) local.push_back({v.scores[i], l->second, r->second});
    }
    std::sort(local.begin(), local.end(), [](const M& a, const M& b) { return a.l != b.l ? a.l < b.l : a.r < b.r; });
    all.insert(all.end(), local.begin(), local.end());
  }
  std::stable_sort(all.begin(), all.end(), [](const M& a, const M& b) { return a.score > b.score; });
  json merges = json::array();
  for (const M& m : all) merges.push_back({v.tokens[m.l], v.tokens[m.r]});
  return merges;
}

}  // namespace

json tokenizer_json_from_gguf(const GgufVocab& v) {
  enum { kNormal = 1, kUnknown = 2, kControl = 3, kUserDefined = 4 };
  auto type_of = [&](size_t i) { return v.token_types.empty() ? kNormal : v.token_types[i]; };
  // GGUF strings are UTF-8 (a JSON text cannot hold anything else); ids must fit a vocabulary.
  UPG_CHECK(v.tokens.size() <= static_cast<size_t>(Tokenizer::kMaxVocabSize), "GGUF vocabulary: ", v.tokens.size(),
            " tokens, more than the ", Tokenizer::kMaxVocabSize, " accepted");
  for (size_t i = 0; i < v.tokens.size(); ++i)
    UPG_CHECK(utf8::is_valid(v.tokens[i]), "GGUF vocabulary: token ", i, " is not valid UTF-8");
  for (size_t i = 0; i < v.merges.size(); ++i)
    UPG_CHECK(utf8::is_valid(v.merges[i]), "GGUF vocabulary: merge ", i, " is not valid UTF-8");
  json vocab = json::object();
  for (size_t i = 0; i < v.tokens.size(); ++i)
    if (!vocab.contains(v.tokens[i])) vocab[v.tokens[i]] = static_cast<int32_t>(i);
  std::vector<ExtraToken> added;
  for (size_t i = 0; i < v.tokens.size(); ++i) {
    const int t = type_of(i);
    if (t == kUnknown || t == kControl || t == kUserDefined)
      added.push_back({v.tokens[i], static_cast<int32_t>(i), t != kUserDefined});
  }
  auto token_at = [&](std::optional<int64_t> id) -> std::optional<std::pair<std::string, int32_t>> {
    if (!id || *id < 0 || *id >= static_cast<int64_t>(v.tokens.size())) return std::nullopt;
    return std::make_pair(v.tokens[*id], static_cast<int32_t>(*id));
  };
  std::vector<std::pair<std::string, int32_t>> before, after;
  if (v.add_bos.value_or(false))
    if (auto b = token_at(v.bos_id)) before.push_back(*b);
  if (v.add_eos.value_or(false))
    if (auto e = token_at(v.eos_id)) after.push_back(*e);

  json j = {{"version", "1.0"}, {"added_tokens", added_tokens_json(added)},
            {"post_processor", template_processing(before, after)}};
  if (v.model == "gpt2") {
    json merges = json::array();
    for (const auto& m : v.merges) merges.push_back(m);
    j["normalizer"] = nullptr;
    j["pre_tokenizer"] = byte_level_pre_tokenizer(llama_cpp_pre_regexes(v.pre));
    j["decoder"] = byte_level_decoder();
    j["model"] = bpe_model(std::move(vocab), std::move(merges), false);
    return j;
  }
  if (v.model == "llama") {
    UPG_CHECK(v.scores.size() == v.tokens.size(), "GGUF: SentencePiece vocabulary without tokenizer.ggml.scores");
    std::vector<bool> mergeable(v.tokens.size());
    for (size_t i = 0; i < v.tokens.size(); ++i) mergeable[i] = type_of(i) == kNormal;
    const std::string meta = "\xE2\x96\x81";  // ▁
    j["normalizer"] = {{"type", "Sequence"},
                       {"normalizers",
                        {{{"type", "Prepend"}, {"prepend", meta}},
                         {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", meta}}}}};
    j["pre_tokenizer"] = nullptr;
    j["decoder"] = {{"type", "Sequence"},
                    {"decoders",
                     {{{"type", "Replace"}, {"pattern", {{"String", meta}}}, {"content", " "}},
                      {{"type", "ByteFallback"}},
                      {{"type", "Fuse"}},
                      {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}}}};
    json model = bpe_model(std::move(vocab), spm_merges(v, mergeable), false);
    model["byte_fallback"] = true;
    model["fuse_unk"] = true;
    if (auto u = token_at(v.unk_id)) model["unk_token"] = u->first;
    j["model"] = std::move(model);
    return j;
  }
  throw Error(str_cat("GGUF: unsupported tokenizer.ggml.model '", v.model, "' (supported: gpt2, llama)"));
}

}  // namespace upg::vocab_import
