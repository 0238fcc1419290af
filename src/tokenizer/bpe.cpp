#include "tokenizer/bpe.h"

#include <nlohmann/json.hpp>
#include <queue>

#include "base/error.h"
#include "tokenizer/utf8.h"

namespace upg {

using nlohmann::json;

BpeModel::BpeModel(const json& m) {
  UPG_CHECK(m.contains("vocab") && m["vocab"].is_object(), "tokenizer.json: model.vocab must be an object");
  for (const auto& [tok, id] : m["vocab"].items()) {
    UPG_CHECK(id.is_number_integer() && id.get<int64_t>() >= 0 && id.get<int64_t>() < (1LL << 31),
              "tokenizer.json: model.vocab[\"", tok, "\"] must be a non-negative integer id, found ", id.dump());
    vocab_.emplace(tok, id.get<int32_t>());
  }
  auto get_str = [&](const char* k) -> std::optional<std::string> {
    if (m.contains(k) && m[k].is_string()) return m[k].get<std::string>();
    return std::nullopt;
  };
  if (auto p = get_str("continuing_subword_prefix"); p && !p->empty())
    throw Error(str_cat("tokenizer.json: BPE continuing_subword_prefix '", *p, "' is not supported"));
  if (auto p = get_str("end_of_word_suffix"); p && !p->empty())
    throw Error(str_cat("tokenizer.json: BPE end_of_word_suffix '", *p, "' is not supported"));
  if (auto u = get_str("unk_token")) {
    auto it = vocab_.find(*u);
    UPG_CHECK(it != vocab_.end(), "tokenizer.json: model.unk_token '", *u, "' is not in model.vocab");
    unk_id_ = it->second;
  }
  byte_fallback_ = m.value("byte_fallback", false);
  fuse_unk_ = m.value("fuse_unk", false);
  ignore_merges_ = m.value("ignore_merges", false);
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof(name), "<0x%02X>", b);
    auto it = vocab_.find(std::string_view(name));
    byte_ids_[b] = it == vocab_.end() ? -1 : it->second;
  }

  const json empty = json::array();
  const json& merges = m.contains("merges") ? m["merges"] : empty;
  UPG_CHECK(merges.is_array(), "tokenizer.json: model.merges must be an array");
  merges_.reserve(merges.size());
  std::string a, b;
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const json& e = merges[rank];
    if (e.is_string()) {  // "a b" (older files)
      const std::string& s = e.get_ref<const std::string&>();
      const size_t sp = s.find(' ');
      UPG_CHECK(sp != std::string::npos, "tokenizer.json: merge #", rank, " \"", s, "\" is not of the form \"a b\"");
      a = s.substr(0, sp);
      b = s.substr(sp + 1);
    } else if (e.is_array() && e.size() == 2 && e[0].is_string() && e[1].is_string()) {  // ["a", "b"]
      a = e[0].get<std::string>();
      b = e[1].get<std::string>();
    } else {
      throw Error(str_cat("tokenizer.json: merge #", rank, " must be \"a b\" or [\"a\", \"b\"], found ", e.dump()));
    }
    auto ia = vocab_.find(a), ib = vocab_.find(b), im = vocab_.find(a + b);
    UPG_CHECK(ia != vocab_.end() && ib != vocab_.end() && im != vocab_.end(), "tokenizer.json: merge #", rank, " (\"",
              a, "\", \"", b, "\") uses a token missing from model.vocab");
    // A repeated pair keeps its first (lowest) rank.
    merges_.emplace(pair_key(ia->second, ib->second), MergeTarget{static_cast<int32_t>(rank), im->second});
  }
}

void BpeModel::encode_word(std::string_view word, std::vector<int32_t>& out) const {
  if (word.empty()) return;
  if (ignore_merges_) {
    if (auto it = vocab_.find(word); it != vocab_.end()) {
      out.push_back(it->second);
      return;
    }
  }
  if (word.size() > kMaxCachedWord) return merge_word(word, out);
  {
    std::lock_guard<std::mutex> lock(cache_mu_);
    if (auto it = cache_.find(word); it != cache_.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  std::vector<int32_t> ids;
  merge_word(word, ids);
  out.insert(out.end(), ids.begin(), ids.end());
  std::lock_guard<std::mutex> lock(cache_mu_);
  if (cache_.size() >= kMaxCacheEntries) cache_.clear();
  cache_.emplace(std::string(word), std::move(ids));
}

void BpeModel::merge_word(std::string_view word, std::vector<int32_t>& out) const {
  // Initial symbols: one per character (see header for byte fallback / unk rules).
  std::vector<int32_t> ids;
  ids.reserve(word.size());
  int64_t pending_unk = -1;  // fused unk not yet emitted
  for (size_t i = 0; i < word.size();) {
    const utf8::Char c = utf8::decode(word, i);
    const std::string_view ch = word.substr(i, c.len);
    i += c.len;
    if (auto it = vocab_.find(ch); it != vocab_.end()) {
      if (pending_unk >= 0) ids.push_back(static_cast<int32_t>(pending_unk)), pending_unk = -1;
      ids.push_back(it->second);
      continue;
    }
    if (byte_fallback_) {
      bool all = true;
      for (char b : ch) all = all && byte_ids_[static_cast<uint8_t>(b)] >= 0;
      if (all) {
        if (pending_unk >= 0) ids.push_back(static_cast<int32_t>(pending_unk)), pending_unk = -1;
        for (char b : ch) ids.push_back(byte_ids_[static_cast<uint8_t>(b)]);
        continue;
      }
    }
    if (unk_id_) {
      if (pending_unk >= 0 && !fuse_unk_) ids.push_back(static_cast<int32_t>(pending_unk));
      pending_unk = *unk_id_;
    }
    // No unk token: the character is dropped, as Hugging Face tokenizers does.
  }
  if (pending_unk >= 0) ids.push_back(static_cast<int32_t>(pending_unk));
  const size_t n = ids.size();
  if (n < 2 || merges_.empty()) {
    out.insert(out.end(), ids.begin(), ids.end());
    return;
  }

  // Doubly linked list over symbol slots; a merged-away slot gets id -1.
  std::vector<int32_t> prev(n), next(n);
  for (size_t i = 0; i < n; ++i) {
    prev[i] = static_cast<int32_t>(i) - 1;
    next[i] = i + 1 < n ? static_cast<int32_t>(i + 1) : -1;
  }
  struct Cand {
    int32_t rank, pos, id;
    bool operator>(const Cand& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  std::priority_queue<Cand, std::vector<Cand>, std::greater<Cand>> heap;
  auto push_pair = [&](int32_t left) {
    const int32_t right = next[left];
    if (right < 0) return;
    auto it = merges_.find(pair_key(ids[left], ids[right]));
    if (it != merges_.end()) heap.push({it->second.rank, left, it->second.id});
  };
  for (size_t i = 0; i + 1 < n; ++i) push_pair(static_cast<int32_t>(i));
  while (!heap.empty()) {
    const Cand c = heap.top();
    heap.pop();
    const int32_t right = next[c.pos];
    if (ids[c.pos] < 0 || right < 0) continue;
    auto it = merges_.find(pair_key(ids[c.pos], ids[right]));
    if (it == merges_.end() || it->second.rank != c.rank || it->second.id != c.id) continue;  // stale
    ids[c.pos] = c.id;
    ids[right] = -1;
    next[c.pos] = next[right];
    if (next[right] >= 0) prev[next[right]] = c.pos;
    if (prev[c.pos] >= 0) push_pair(prev[c.pos]);
    push_pair(c.pos);
  }
  for (int32_t i = 0; i >= 0; i = next[i]) out.push_back(ids[i]);
}

}  // namespace upg
