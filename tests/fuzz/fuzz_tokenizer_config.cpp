// libFuzzer target for tokenizer_config.json and generation_config.json as the tokenizer reads
// them (bos/eos tokens, add_bos/add_eos, eos_token_id lists, added tokens) and for the
// "chat_template" field (a string or a list of {name, template}), with a fixed small byte-level
// BPE tokenizer.json. The input is the JSON text, used as tokenizer_config.json, then as
// generation_config.json; a template it holds is parsed and rendered (fuzz_chat_template covers
// templates themselves). Every problem must surface as upg::Error.
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "base/error.h"
#include "fuzz_util.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace {

// A byte-level BPE tokenizer.json with every byte, a few merges and added tokens.
std::string small_tokenizer_json() {
  nlohmann::json vocab = nlohmann::json::object();
  const nlohmann::json base = nlohmann::json::parse(R"({"type": "ByteLevel", "add_prefix_space": false,
      "trim_offsets": true, "use_regex": true})");
  // The byte-to-unicode map of GPT-2: printable Latin-1 bytes map to themselves, the rest to U+0100...
  int next = 0;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
    const int cp = printable ? b : 0x100 + next++;
    std::string s;
    if (cp < 0x80) s += static_cast<char>(cp);
    else s += static_cast<char>(0xC0 | (cp >> 6)), s += static_cast<char>(0x80 | (cp & 0x3F));
    vocab[s] = b;
  }
  vocab["He"] = 256;
  vocab["ll"] = 257;
  vocab["Hell"] = 258;
  vocab["\xC4\xA0w"] = 259;
  nlohmann::json j = {
      {"version", "1.0"},
      {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", {"H e", "l l", "He ll", "\xC4\xA0 w"}}}},
      {"pre_tokenizer", base},
      {"decoder", base},
      {"post_processor", base},
      {"added_tokens",
       {{{"id", 260}, {"content", "<|endoftext|>"}, {"special", true}},
        {{"id", 261}, {"content", "<s>"}, {"special", true}},
        {{"id", 262}, {"content", "</s>"}, {"special", true}},
        {{"id", 263}, {"content", "<|im_start|>"}, {"special", true}, {"lstrip", true}, {"rstrip", true}}}}};
  return j.dump();
}

const std::string& tokenizer_json() {
  static const std::string s = small_tokenizer_json();
  return s;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text = upg::fuzz::as_text(data, size);
  try {
    upg::fuzz::exercise_tokenizer(upg::Tokenizer::from_json_strings(tokenizer_json(), text, ""));
  } catch (const upg::Error&) {
  }
  try {
    upg::fuzz::exercise_tokenizer(upg::Tokenizer::from_json_strings(tokenizer_json(), "", text));
  } catch (const upg::Error&) {
  }
  try {
    if (auto src = upg::chat_template_from_config(std::string(text), "tokenizer_config.json")) {
      upg::ChatTemplateOptions opt;
      opt.max_output_bytes = size_t{1} << 20;
      opt.max_loop_steps = 100'000;
      opt.now = 0;
      const auto messages = nlohmann::ordered_json::parse(
          R"([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}])");
      (void)upg::apply_chat_template(*src, messages, true, "<s>", "</s>", nullptr, opt);
    }
  } catch (const upg::Error&) {
  }
  return 0;
}
