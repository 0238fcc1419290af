// libFuzzer target for the GGUF vocabulary import: the GGUF header and key/value section
// (parse_gguf_vocab), the conversion to a tokenizer.json (tokenizer_json_from_gguf: SentencePiece
// and byte-level BPE vocabularies, llama.cpp pre-tokenizer names) and loading + using that
// tokenizer. The input is the GGUF image. Every problem must surface as upg::Error.
//
// With UPG_FUZZ_SEED_DIR set, LLVMFuzzerInitialize writes small valid GGUF seeds there.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "base/error.h"
#include "format/gguf_vocab.h"
#include "fuzz_util.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/vocab_import.h"

namespace {

// A minimal GGUF v3 writer for the seeds.
struct Gguf {
  std::string out, kv;
  uint64_t n_kv = 0;
  template <class T>
  static void put(std::string& s, T v) {
    char b[sizeof(T)];
    std::memcpy(b, &v, sizeof(T));
    s.append(b, sizeof(T));
  }
  static void put_str(std::string& s, const std::string& v) {
    put<uint64_t>(s, v.size());
    s += v;
  }
  void key(const std::string& k, uint32_t type) {
    put_str(kv, k);
    put<uint32_t>(kv, type);
    ++n_kv;
  }
  void str(const std::string& k, const std::string& v) { key(k, 8), put_str(kv, v); }
  void u32(const std::string& k, uint32_t v) { key(k, 4), put<uint32_t>(kv, v); }
  void boolean(const std::string& k, bool v) { key(k, 7), put<uint8_t>(kv, v ? 1 : 0); }
  void strs(const std::string& k, const std::vector<std::string>& v) {
    key(k, 9), put<uint32_t>(kv, 8), put<uint64_t>(kv, v.size());
    for (const auto& s : v) put_str(kv, s);
  }
  void f32s(const std::string& k, const std::vector<float>& v) {
    key(k, 9), put<uint32_t>(kv, 6), put<uint64_t>(kv, v.size());
    for (float f : v) put<float>(kv, f);
  }
  void i32s(const std::string& k, const std::vector<int32_t>& v) {
    key(k, 9), put<uint32_t>(kv, 5), put<uint64_t>(kv, v.size());
    for (int32_t x : v) put<int32_t>(kv, x);
  }
  std::string finish() const {
    std::string s = "GGUF";
    put<uint32_t>(s, 3), put<uint64_t>(s, 0), put<uint64_t>(s, n_kv);
    return s + kv;
  }
};

void write(const std::string& dir, const std::string& name, const std::string& bytes) {
  std::ofstream(dir + "/" + name, std::ios::binary) << bytes;
}

void make_seeds(const std::string& dir) {
  {  // SentencePiece ("llama"): <unk> <s> </s>, byte tokens, pieces with scores
    Gguf g;
    std::vector<std::string> toks = {"<unk>", "<s>", "</s>"};
    std::vector<int32_t> types = {2, 3, 3};
    char b[8];
    for (int i = 0; i < 256; ++i) {
      std::snprintf(b, sizeof(b), "<0x%02X>", i);
      toks.push_back(b), types.push_back(6);
    }
    for (const char* p : {"\xE2\x96\x81", "\xE2\x96\x81H", "e", "l", "o", "\xE2\x96\x81Hello", "ll", "He"})
      toks.push_back(p), types.push_back(1);
    std::vector<float> scores(toks.size());
    for (size_t i = 0; i < scores.size(); ++i) scores[i] = -static_cast<float>(i);
    g.str("general.architecture", "llama");
    g.str("tokenizer.ggml.model", "llama");
    g.strs("tokenizer.ggml.tokens", toks);
    g.f32s("tokenizer.ggml.scores", scores);
    g.i32s("tokenizer.ggml.token_type", types);
    g.u32("tokenizer.ggml.bos_token_id", 1);
    g.u32("tokenizer.ggml.eos_token_id", 2);
    g.u32("tokenizer.ggml.unknown_token_id", 0);
    g.boolean("tokenizer.ggml.add_bos_token", true);
    write(dir, "seed_spm", g.finish());
  }
  for (const char* pre : {"llama-bpe", "qwen2", "gpt-2", "default"}) {  // byte-level BPE ("gpt2")
    Gguf g;
    std::vector<std::string> toks;
    std::vector<int32_t> types;
    for (int c = 0x21; c < 0x7F; ++c) toks.push_back(std::string(1, static_cast<char>(c))), types.push_back(1);
    for (const char* p : {"\xC4\xA0", "He", "ll", "Hell", "\xC4\xA0w", "<|endoftext|>"})
      toks.push_back(p), types.push_back(1);
    types.back() = 3;
    g.str("tokenizer.ggml.model", "gpt2");
    g.str("tokenizer.ggml.pre", pre);
    g.strs("tokenizer.ggml.tokens", toks);
    g.i32s("tokenizer.ggml.token_type", types);
    g.strs("tokenizer.ggml.merges", {"H e", "l l", "He ll", "\xC4\xA0 w"});
    g.u32("tokenizer.ggml.eos_token_id", static_cast<uint32_t>(toks.size() - 1));
    write(dir, std::string("seed_bpe_") + pre, g.finish());
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  if (const char* seeds = std::getenv("UPG_FUZZ_SEED_DIR")) make_seeds(seeds);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const upg::GgufVocab v = upg::parse_gguf_vocab(data, size, "fuzz.gguf");
    const nlohmann::json tj = upg::vocab_import::tokenizer_json_from_gguf(v);
    upg::fuzz::exercise_tokenizer(upg::Tokenizer::from_json_strings(tj.dump()));
  } catch (const upg::Error&) {
  }
  return 0;
}
