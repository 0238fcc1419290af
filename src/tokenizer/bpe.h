// BPE model of tokenizer.json ("model": {"type": "BPE", ...}).
//
// A word (one pre-token, in vocabulary space: GPT-2 byte alphabet for byte-level tokenizers,
// "▁"-marked text for SentencePiece-style ones) starts as one symbol per character; characters
// missing from the vocabulary become <0xNN> byte tokens (byte_fallback) or the unk token
// (consecutive ones fused when fuse_unk). Then the adjacent pair with the lowest merge rank is
// merged, leftmost first on ties, until no pair has a merge. Cost: O(n log n) per word with a
// heap of candidate pairs over a linked list of symbols. With ignore_merges (Llama-3), a word
// that is itself a vocabulary entry is emitted whole. Results for words up to kMaxCachedWord
// bytes are cached (thread-safe).
#pragma once
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace upg {

// Hash for std::string keys that also accepts std::string_view lookups without allocating.
struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
using Vocab = std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>>;

class BpeModel {
 public:
  static constexpr size_t kMaxCachedWord = 256;
  static constexpr size_t kMaxCacheEntries = 1 << 16;

  // Parses the "model" object; throws Error for unsupported options or inconsistent merges.
  explicit BpeModel(const nlohmann::json& model);
  BpeModel(const BpeModel&) = delete;
  BpeModel& operator=(const BpeModel&) = delete;

  // Appends the ids of `word` to out.
  void encode_word(std::string_view word, std::vector<int32_t>& out) const;

  const Vocab& vocab() const { return vocab_; }
  std::optional<int32_t> unk_id() const { return unk_id_; }
  bool byte_fallback() const { return byte_fallback_; }

 private:
  void merge_word(std::string_view word, std::vector<int32_t>& out) const;
  struct MergeTarget {
    int32_t rank;
    int32_t id;
  };
  static uint64_t pair_key(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }

  Vocab vocab_;
  std::unordered_map<uint64_t, MergeTarget> merges_;
  std::optional<int32_t> unk_id_;
  bool byte_fallback_ = false;
  bool fuse_unk_ = false;
  bool ignore_merges_ = false;
  int32_t byte_ids_[256];  // id of "<0xNN>" or -1

  mutable std::mutex cache_mu_;
  mutable std::unordered_map<std::string, std::vector<int32_t>, StringHash, std::equal_to<>> cache_;
};

}  // namespace upg
