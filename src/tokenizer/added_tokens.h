// Added tokens of tokenizer.json ("added_tokens": special tokens such as <|endoftext|> and user
// tokens). They are found in the text before pre-tokenization: tokens with normalized=false in
// the raw input, tokens with normalized=true in the normalized segments. Matching is
// leftmost-longest; lstrip/rstrip swallow the whitespace before/after a match; single_word only
// accepts a match not glued to letters/digits on either side.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace upg {

struct AddedToken {
  int32_t id = -1;
  std::string content;
  bool special = false;
  bool lstrip = false, rstrip = false, single_word = false, normalized = false;
};

// One piece of a split: either text to encode further (id < 0) or a matched added token.
struct Segment {
  size_t begin, end;  // byte range in the split string
  int32_t id;         // added token id, or -1 for plain text
};

class AddedTokenMatcher {
 public:
  AddedTokenMatcher() = default;
  explicit AddedTokenMatcher(std::vector<AddedToken> tokens);
  bool empty() const { return tokens_.empty(); }
  // Splits s into text and added-token segments covering it (text segments may be empty only
  // when s is empty, in which case nothing is returned).
  std::vector<Segment> split(std::string_view s) const;

 private:
  // Byte trie over the token contents: node -> children by byte; terminal holds token index.
  struct Node {
    int32_t child[256];
    int32_t token = -1;
  };
  std::vector<Node> trie_;
  std::vector<AddedToken> tokens_;
  bool first_byte_[256] = {};
};

}  // namespace upg
