// Tokenizer core: refA's byte-level tokenizer.json (round trips, merges against a naive reference
// BPE, special tokens, BOS/EOS config), many scripts, invalid UTF-8, long runs (speed),
// StreamDecoder, a SentencePiece-style tokenizer, a tiny self-contained tokenizer.json, bad input.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "base/error.h"
#include "base/mapped_file.h"
#include "format/gguf_vocab.h"
#include "test_util.h"
#include "tiny_tokenizer.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"
#include "tokenizer/vocab_import.h"

namespace {

using upg::Tokenizer;
using nlohmann::json;

const std::vector<std::string>& sample_texts() {
  static const std::vector<std::string> t = {
      "",
      "Hello, world! This is a test of the tokenizer.",
      "The quick brown fox jumps over the lazy dog 1234567890 times.",
      "日本語のテキストと中文文本，还有한국어 텍스트.",
      "مرحبا بالعالم، هذا اختبار",
      "नमस्ते दुनिया, यह एक परीक्षण है",
      "Emoji: 👩‍👩‍👧‍👦 family, 🏳️‍🌈 flag, 👍🏽 thumbs",
      "Combining: e\xCC\x81 a\xCC\x88\xCC\x81 Z\xCD\x91\xCD\x82\xCC\x9F",
      "   leading and trailing spaces   ",
      "tabs\t\tand\nnewlines\n\n\r\n mixed \u00a0nbsp\u2028sep",
      "code: for (int i = 0; i < n; ++i) { x += y[i] * 2; } // done",
      "I've been 'told he's there, 'RE you sure? We'Ve a'lL",
      "<|im_start|>user<|im_sep|>Hi!<|im_end|><|im_start|>assistant<|im_sep|>",
  };
  return t;
}

std::vector<std::string> invalid_texts() {
  return {std::string("\xff"), std::string("abc\x80\x81xyz"), std::string("\xe2\x82"), std::string("\xf0\x9f\x98"),
          std::string("ok \xc3\x28 bad \xed\xa0\x80 surrogate \xf8\x88\x80\x80\x80"), std::string("\0\x01\x7f", 3)};
}

Tokenizer refa(const std::string& data) { return Tokenizer::from_dir(data + "/models/refA-phi3-26m"); }

// Naive O(n^2) BPE over one pre-token: repeatedly merge the lowest-ranked adjacent pair.
std::vector<int32_t> naive_bpe(const json& model, const std::string& word_bytes) {
  std::map<std::pair<std::string, std::string>, size_t> rank;
  const auto& merges = model["merges"];
  for (size_t i = 0; i < merges.size(); ++i)
    rank.emplace(std::make_pair(merges[i][0].get<std::string>(), merges[i][1].get<std::string>()), i);
  std::vector<std::string> parts;
  for (char c : word_bytes) parts.push_back(upg::byte_level::encode(std::string(1, c)));
  for (;;) {
    size_t best = SIZE_MAX, at = 0;
    for (size_t i = 0; i + 1 < parts.size(); ++i) {
      auto it = rank.find({parts[i], parts[i + 1]});
      if (it != rank.end() && it->second < best) best = it->second, at = i;
    }
    if (best == SIZE_MAX) break;
    parts[at] += parts[at + 1];
    parts.erase(parts.begin() + static_cast<long>(at) + 1);
  }
  std::vector<int32_t> ids;
  for (const auto& p : parts) ids.push_back(model["vocab"][p].get<int32_t>());
  return ids;
}

void expect_stream_matches(const Tokenizer& tok, const std::vector<int32_t>& ids, const std::string& label) {
  upg::StreamDecoder sd(tok);
  std::string all;
  for (int32_t id : ids) {
    const std::string part = sd.push(id);
    EXPECT_TRUE(upg::utf8::is_valid(part)) << label << ": broken UTF-8 emitted";
    all += part;
  }
  const std::string rest = sd.flush();
  EXPECT_TRUE(upg::utf8::is_valid(rest)) << label;
  all += rest;
  EXPECT_EQ(all, upg::utf8::sanitize(tok.decode(ids))) << label;
}

TEST(Tokenizer, RefARoundTripsAndMerges) {
  UPG_NEED_SHARED_DATA(data);
  const Tokenizer tok = refa(data);
  EXPECT_EQ(tok.vocab_size(), 8192);
  for (const auto& s : sample_texts()) {
    const auto ids = tok.encode(s);
    EXPECT_EQ(tok.decode(ids), s);
    for (int32_t id : ids) EXPECT_TRUE(id >= 0 && id < tok.vocab_size());
    expect_stream_matches(tok, ids, s);
  }
  for (const auto& s : invalid_texts()) {
    const auto ids = tok.encode(s);
    EXPECT_EQ(tok.decode(ids), s) << "invalid UTF-8 must round-trip";
    expect_stream_matches(tok, ids, "invalid");
  }
  // Merges: single pre-tokens against a naive reference BPE on the same tokenizer.json.
  const json tj = json::parse(upg::read_text_file(data + "/models/refA-phi3-26m/tokenizer.json"));
  for (const std::string w : {"internationalization", " the", " Wikipedia", "antidisestablishmentarianism",
                              " encyclopaedia", "zzzzzzzzzzzzzzzz", " 123", "!!!!!!!"})
    EXPECT_EQ(tok.encode(w, false), naive_bpe(tj["model"], w)) << w;
  // Frequent words are single tokens, and the vocabulary text maps back.
  const auto the = tok.encode(" the", false);
  ASSERT_EQ(the.size(), 1u);
  EXPECT_EQ(tok.token_piece(the[0]), " the");
  EXPECT_EQ(tok.token_to_id("\xC4\xA0the"), the[0]);  // "Ġthe"
}

TEST(Tokenizer, RefASpecialTokensAndConfig) {
  UPG_NEED_SHARED_DATA(data);
  const Tokenizer tok = refa(data);
  // refA: bos = eos = <|endoftext|> (0), no BOS added by its post-processor.
  EXPECT_EQ(tok.bos_id(), 0);
  EXPECT_FALSE(tok.add_bos());
  EXPECT_EQ(tok.eos_ids(), std::vector<int32_t>{0});
  EXPECT_EQ(tok.bos_token(), "<|endoftext|>");
  EXPECT_EQ(tok.eos_token(), "<|endoftext|>");
  const auto ids = tok.encode("<|im_start|>user<|im_sep|>Hi<|im_end|>");
  ASSERT_GE(ids.size(), 5u);
  EXPECT_EQ(ids.front(), 1);
  EXPECT_EQ(ids[ids.size() - 1], 3);
  EXPECT_TRUE(tok.is_special(1));
  EXPECT_EQ(tok.decode(ids, /*skip_special=*/true), "userHi");
  EXPECT_EQ(tok.token_piece(3), "<|im_end|>");
  EXPECT_EQ(tok.token_to_id("<|im_sep|>"), 2);
  EXPECT_FALSE(tok.token_to_id("<|nope|>").has_value());
  EXPECT_THROW(tok.decode(std::vector<int32_t>{8192}), upg::Error);
  EXPECT_THROW(tok.token_piece(-1), upg::Error);
}

TEST(Tokenizer, LongRunsAreFast) {
  UPG_NEED_SHARED_DATA(data);
  const Tokenizer tok = refa(data);
  for (const std::string& unit : {std::string("a"), std::string(" "), std::string("\n"), std::string("7"),
                                  std::string("é"), std::string("!"), std::string("ab")}) {
    std::string s;
    while (s.size() < 100000) s += unit;
    const auto t0 = std::chrono::steady_clock::now();
    const auto ids = tok.encode(s);
    const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    EXPECT_LT(sec, 0.5) << "encoding 100k x '" << unit << "' took " << sec << " s";
    EXPECT_EQ(tok.decode(ids), s);
    EXPECT_LE(ids.size(), s.size());  // refA's small vocabulary has no merges for some runs
  }
}

TEST(Tokenizer, StreamDecoderHoldsPartialCharacters) {
  UPG_NEED_SHARED_DATA(data);
  const Tokenizer tok = refa(data);
  // Byte tokens of "€" (E2 82 AC) fed one at a time: nothing until the last byte arrives.
  const std::string euro = "\xE2\x82\xAC";
  std::vector<int32_t> ids;
  for (char c : euro) ids.push_back(*tok.token_to_id(upg::byte_level::encode(std::string(1, c))));
  upg::StreamDecoder sd(tok);
  EXPECT_EQ(sd.push(ids[0]), "");
  EXPECT_EQ(sd.push(ids[1]), "");
  EXPECT_EQ(sd.push(ids[2]), euro);
  EXPECT_EQ(sd.push(ids[0]), "");
  EXPECT_EQ(sd.flush(), "\xEF\xBF\xBD");  // a dangling lead byte comes out as U+FFFD at the end
}

TEST(Tokenizer, SentencePieceStyle) {
  UPG_NEED_SHARED_DATA(data);
  const upg::GgufVocab v = upg::read_gguf_vocab(data + "/tokenizers/llama.cpp-vectors/ggml-vocab-llama-spm.gguf");
  const Tokenizer tok = Tokenizer::from_json_strings(
      upg::vocab_import::tokenizer_json_from_gguf(v).dump(),
      R"({"add_bos_token": true, "add_eos_token": false, "bos_token": {"content": "<s>"}, "eos_token": "</s>"})",
      R"({"eos_token_id": 2})");
  EXPECT_EQ(tok.bos_id(), 1);
  EXPECT_TRUE(tok.add_bos());
  EXPECT_EQ(tok.eos_ids(), std::vector<int32_t>{2});
  EXPECT_EQ(tok.encode("Hello world"), (std::vector<int32_t>{1, 15043, 3186}));
  EXPECT_EQ(tok.decode(tok.encode("Hello world"), true), "Hello world");
  EXPECT_EQ(tok.token_piece(13), "\n");  // <0x0A>
  for (const auto& s : sample_texts()) {
    const auto ids = tok.encode(s, false);
    if (s.find("<|") == std::string::npos) EXPECT_EQ(tok.decode(ids), s);
    upg::StreamDecoder sd(tok);
    std::string all;
    for (int32_t id : ids) all += sd.push(id);
    all += sd.flush();
    EXPECT_EQ(all, tok.decode(ids));  // includes dropping the leading "▁" space
  }
  for (const auto& s : invalid_texts()) EXPECT_EQ(tok.decode(tok.encode(s, false)), s);  // via <0xNN>
}

// A tiny tokenizer.json written by hand: no shared data needed.
std::string tiny_json(const std::string& model_type = "BPE") { return upg::test::tiny_tokenizer_json(model_type); }

TEST(Tokenizer, TinyHandWritten) {
  const Tokenizer tok = Tokenizer::from_json_strings(tiny_json(), "", R"({"eos_token_id": [300]})");
  EXPECT_EQ(tok.vocab_size(), 302);
  EXPECT_EQ(tok.encode("abc ab"), (std::vector<int32_t>{257, 258, 300}));
  EXPECT_EQ(tok.encode("abc ab", false), (std::vector<int32_t>{257, 258}));
  // <sp> has rstrip: the spaces after it are part of the match.
  EXPECT_EQ(tok.encode("x<sp>   ab", false), (std::vector<int32_t>{'x', 301, 256}));
  EXPECT_EQ(tok.eos_ids(), std::vector<int32_t>{300});
  EXPECT_EQ(tok.decode(tok.encode("abc ab")), "abc ab<eos>");
  EXPECT_EQ(tok.decode(tok.encode("abc ab"), true), "abc ab");
}

TEST(Tokenizer, BadInputNamesTheProblem) {
  auto expect_error = [](auto fn, const std::string& needle) {
    try {
      fn();
      ADD_FAILURE() << "no error; expected one mentioning '" << needle << "'";
    } catch (const upg::Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  expect_error([] { Tokenizer::from_dir("/nonexistent/model/dir"); }, "tokenizer.json");
  expect_error([] { Tokenizer::from_json_strings("{\"model\": {"); }, "malformed JSON");
  expect_error([] { Tokenizer::from_json_strings(tiny_json("WordPiece")); }, "WordPiece");
  expect_error([] { Tokenizer::from_json_strings(tiny_json("Unigram")); }, "unsupported model type");
  expect_error([] { Tokenizer::from_json_strings("{}"); }, "model");
  expect_error([] { Tokenizer::from_json_strings(tiny_json(), "{bad"); }, "tokenizer_config.json");
  json j = json::parse(tiny_json());
  j["normalizer"] = {{"type", "BertNormalizer"}};
  expect_error([&] { Tokenizer::from_json_strings(j.dump()); }, "BertNormalizer");
  j = json::parse(tiny_json());
  j["pre_tokenizer"] = {{"type", "Punctuation"}};
  expect_error([&] { Tokenizer::from_json_strings(j.dump()); }, "Punctuation");
  j = json::parse(tiny_json());
  j["pre_tokenizer"] = {{"type", "Split"}, {"pattern", {{"Regex", "(unclosed"}}}, {"behavior", "Isolated"}};
  expect_error([&] { Tokenizer::from_json_strings(j.dump()); }, "(unclosed");
  j = json::parse(tiny_json());
  j["model"]["merges"].push_back("q zz");
  expect_error([&] { Tokenizer::from_json_strings(j.dump()); }, "missing from model.vocab");
  expect_error([] { Tokenizer::from_json_strings(tiny_json(), R"({"bos_token": "<nope>"})"); }, "<nope>");
  expect_error([] { Tokenizer::from_json_strings(tiny_json(), "", R"({"eos_token_id": "x"})"); }, "eos_token_id");
  // A directory with a broken tokenizer.json: the error names the directory.
  const auto dir = std::filesystem::temp_directory_path() / "upg_tok_bad";
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "tokenizer.json") << "[1, 2";
  expect_error([&] { Tokenizer::from_dir(dir.string()); }, dir.string());
  std::filesystem::remove_all(dir);
  // Truncated / corrupt GGUF.
  const std::string gguf = std::string("GGUF\x03\0\0\0", 8) + std::string(16, '\0');
  expect_error([&] { upg::parse_gguf_vocab(reinterpret_cast<const uint8_t*>(gguf.data()), 6, "x.gguf"); }, "truncated");
  expect_error([&] { upg::parse_gguf_vocab(reinterpret_cast<const uint8_t*>("GGML0000"), 8, "y.gguf"); }, "magic");
  std::string lying = std::string("GGUF\x03\0\0\0", 8) + std::string(8, '\0') + std::string("\x01\0\0\0\0\0\0\0", 8) +
                      std::string("\xff\xff\xff\xff\0\0\0\0", 8);  // key length 4 GiB
  expect_error([&] { upg::parse_gguf_vocab(reinterpret_cast<const uint8_t*>(lying.data()), lying.size(), "z.gguf"); },
               "truncated");
}

}  // namespace
