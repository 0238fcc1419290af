// Untrusted input fails with upg::Error naming the file and the field, never with another
// exception type, an abort or an allocation sized from the input (issue 13, "Errors, not aborts"):
// size caps before reading or parsing, nlohmann type errors in config files, token-id and size
// bounds, PCRE2 match errors, the scheduler thread. Also the regression inputs the fuzzers found
// (tests/fuzz/).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "base/error.h"
#include "base/mapped_file.h"
#include "format/gguf_vocab.h"
#include "format/safetensors.h"
#include "models/model_config.h"
#include "runtime/scheduler.h"
#include "runtime/session.h"
#include "tiny_tokenizer.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/regex.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/vocab_import.h"

namespace upg {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

// fn() must throw upg::Error (not another type) whose message contains every needle.
template <class F>
void expect_upg_error(F&& fn, std::initializer_list<std::string> needles) {
  try {
    fn();
    ADD_FAILURE() << "no error; expected one mentioning '" << *needles.begin() << "'";
  } catch (const Error& e) {
    for (const std::string& n : needles) EXPECT_NE(std::string(e.what()).find(n), std::string::npos) << e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "expected upg::Error, got another exception: " << e.what();
  }
}

class TempDir {
 public:
  TempDir() {
    std::string t = (std::filesystem::temp_directory_path() / "upg_untrusted_XXXXXX").string();
    if (!::mkdtemp(t.data())) throw std::runtime_error("mkdtemp failed");
    path_ = t;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  std::string file(const std::string& name, const std::string& text) const {
    const std::string p = (path_ / name).string();
    std::ofstream(p, std::ios::binary) << text;
    return p;
  }
  std::string path() const { return path_.string(); }

 private:
  std::filesystem::path path_;
};

// ---------------------------------------------------------------- size caps

TEST(UntrustedInput, ReadTextFileRefusesAFileOverItsCapNamingFileSizeAndCap) {
  TempDir d;
  const std::string p = d.file("config.json", std::string(100, 'x'));
  EXPECT_EQ(read_text_file(p, 100).size(), 100u);
  EXPECT_EQ(read_text_file(p).size(), 100u);
  expect_upg_error([&] { read_text_file(p, 99); }, {p, "100 bytes", "99 bytes accepted"});
}

TEST(UntrustedInput, TokenizerDirWithAHugeConfigIsRefusedBeforeParsing) {
  TempDir d;
  d.file("tokenizer.json", test::tiny_tokenizer_json());
  // Sparse: 16 MiB + 1 bytes on disk cost nothing; the cap refuses it before reading.
  const std::string cfg = d.file("tokenizer_config.json", "");
  ASSERT_EQ(::truncate(cfg.c_str(), static_cast<off_t>(kMaxConfigFileBytes + 1)), 0);
  expect_upg_error([&] { Tokenizer::from_dir(d.path()); }, {"tokenizer_config.json", std::to_string(kMaxConfigFileBytes)});
}

TEST(UntrustedInput, SafetensorsHeaderOverTheCapIsRefused) {
  TempDir d;
  const std::string p = d.file("model.safetensors", "");
  const uint64_t len = kMaxHeaderBytes + 8;  // inside the (sparse) file, over the cap
  {
    std::fstream f(p, std::ios::binary | std::ios::in | std::ios::out);
    for (int i = 0; i < 8; ++i) f.put(static_cast<char>(len >> (8 * i)));
  }
  ASSERT_EQ(::truncate(p.c_str(), static_cast<off_t>(len + 16)), 0);
  expect_upg_error([&] { SafetensorsFile::open(p); }, {p, "JSON header", std::to_string(kMaxHeaderBytes)});
}

// ---------------------------------------------------------------- config.json

json small_config() {
  return json::parse(R"({"architectures": ["LlamaForCausalLM"], "hidden_size": 64, "num_hidden_layers": 2,
      "num_attention_heads": 4, "intermediate_size": 128, "vocab_size": 300})");
}

TEST(UntrustedInput, ModelConfigTypeErrorsNameTheFileAndField) {
  EXPECT_NO_THROW(parse_model_config(small_config(), "m/config.json"));
  auto with = [](const char* key, json v) {
    json j = small_config();
    j[key] = std::move(v);
    return j;
  };
  expect_upg_error([&] { parse_model_config(with("hidden_size", "abc"), "m/config.json"); },
                   {"m/config.json", "hidden_size"});
  expect_upg_error([&] { parse_model_config(with("eos_token_id", json::object()), "m/config.json"); },
                   {"m/config.json", "eos_token_id"});
  expect_upg_error([&] { parse_model_config(with("eos_token_id", json::array({1, "x"})), "m/config.json"); },
                   {"m/config.json", "eos_token_id"});
  expect_upg_error([&] { parse_model_config(with("bos_token_id", 5000000000LL), "m/config.json"); },
                   {"bos_token_id", "too large"});
  expect_upg_error([&] { parse_model_config(with("pad_token_id", -2), "m/config.json"); },
                   {"pad_token_id", "negative"});
  expect_upg_error([&] { parse_model_config(with("hidden_size", 1e300), "m/config.json"); },
                   {"hidden_size", "out of range"});
  expect_upg_error([&] { parse_model_config(with("vocab_size", 18446744073709551615ULL), "m/config.json"); },
                   {"vocab_size", "too large"});
  expect_upg_error([&] { parse_model_config(with("rope_scaling", {{"rope_type", "yarn"}, {"factor", 2.0},
                                                                  {"truncate", "yes"}}), "m/config.json"); },
                   {"m/config.json", "truncate"});
  json no_arch = small_config();
  no_arch.erase("architectures");
  no_arch["model_type"] = 5;
  expect_upg_error([&] { parse_model_config(no_arch, "m/config.json"); }, {"m/config.json", "model_type"});
}

TEST(UntrustedInput, ModelConfigSizesAreCappedBeforeAnythingIsAllocated) {
  auto with = [](const char* key, json v) {
    json j = small_config();
    j[key] = std::move(v);
    return j;
  };
  expect_upg_error([&] { parse_model_config(with("num_hidden_layers", 2000000000), "c"); },
                   {"num_hidden_layers", std::to_string(kMaxModelLayers)});
  expect_upg_error([&] { parse_model_config(with("vocab_size", 2000000000), "c"); },
                   {"vocab_size", std::to_string(kMaxModelVocab)});
  expect_upg_error([&] { parse_model_config(with("hidden_size", int64_t{1} << 40), "c"); }, {"hidden_size"});
  expect_upg_error([&] { parse_model_config(with("max_position_embeddings", int64_t{1} << 40), "c"); },
                   {"max_position_embeddings"});
}

TEST(UntrustedInput, Qwen2NegativeMaxWindowLayersIsAnError) {
  // Was an out-of-bounds write into the per-layer window table.
  json j = small_config();
  j["architectures"] = {"Qwen2ForCausalLM"};
  j["use_sliding_window"] = true;
  j["sliding_window"] = 16;
  j["max_window_layers"] = -3;
  expect_upg_error([&] { parse_model_config(j, "q/config.json"); }, {"q/config.json", "max_window_layers"});
}

// ---------------------------------------------------------------- tokenizer files

std::string tokenizer_with(const std::function<void(json&)>& edit) {
  json j = json::parse(test::tiny_tokenizer_json());
  edit(j);
  return j.dump();
}

TEST(UntrustedInput, HugeAddedTokenIdIsRefusedBeforeAllocating) {
  const std::string tj = tokenizer_with([](json& j) {
    j["added_tokens"].push_back({{"id", 2000000000}, {"content", "<huge>"}, {"special", true}});
  });
  expect_upg_error([&] { Tokenizer::from_json_strings(tj); }, {"tokenizer.json", "2000000000", "too large"});
  const std::string max = tokenizer_with([](json& j) {
    j["added_tokens"].push_back({{"id", 2147483647}, {"content", "<max>"}});
  });
  expect_upg_error([&] { Tokenizer::from_json_strings(max); }, {"2147483647", "too large"});
  const std::string vocab = tokenizer_with([](json& j) { j["model"]["vocab"]["zz"] = 2000000000; });
  expect_upg_error([&] { Tokenizer::from_json_strings(vocab); }, {"model.vocab", "too large"});
}

TEST(UntrustedInput, AddedTokenTypeErrorsNameTheField) {
  expect_upg_error([&] { Tokenizer::from_json_strings(tokenizer_with([](json& j) { j["added_tokens"] = {5}; })); },
                   {"tokenizer.json", "added_tokens[0]"});
  expect_upg_error([&] {
    Tokenizer::from_json_strings(tokenizer_with([](json& j) { j["added_tokens"][0]["special"] = "yes"; }));
  }, {"tokenizer.json", "added_tokens[0].special"});
  expect_upg_error([&] {
    Tokenizer::from_json_strings(tokenizer_with([](json& j) { j["added_tokens"][1]["id"] = "301"; }));
  }, {"tokenizer.json", "added_tokens[1].id"});
  expect_upg_error([&] {
    Tokenizer::from_json_strings(tokenizer_with([](json& j) { j["added_tokens"][1]["content"] = 7; }));
  }, {"tokenizer.json", "added_tokens[1].content"});
}

TEST(UntrustedInput, TokenizerConfigTypeErrorsNameTheFileAndField) {
  const std::string tj = test::tiny_tokenizer_json();
  expect_upg_error([&] { Tokenizer::from_json_strings(tj, R"({"bos_token": 5})"); },
                   {"tokenizer_config.json", "bos_token"});
  expect_upg_error([&] { Tokenizer::from_json_strings(tj, R"({"eos_token": {"content": 1}})"); },
                   {"tokenizer_config.json", "eos_token"});
  expect_upg_error([&] { Tokenizer::from_json_strings(tj, R"({"add_bos_token": "yes"})"); },
                   {"tokenizer_config.json", "add_bos_token"});
  expect_upg_error([&] { Tokenizer::from_json_strings(tj, "[1, 2]"); }, {"tokenizer_config.json", "object"});
  expect_upg_error([&] { Tokenizer::from_json_strings(tj, "", R"({"eos_token_id": {}})"); },
                   {"generation_config.json", "eos_token_id"});
  expect_upg_error([&] { Tokenizer::from_json_strings(tj, "", R"({"eos_token_id": [300, 5000000000]})"); },
                   {"generation_config.json", "eos_token_id", "too large"});
  expect_upg_error([&] { Tokenizer::from_json_strings(tj, "", R"({"bos_token_id": -1})"); },
                   {"generation_config.json", "bos_token_id", "negative"});
  EXPECT_NO_THROW(Tokenizer::from_json_strings(tj, R"({"bos_token": null, "eos_token": "<eos>"})"));
}

TEST(UntrustedInput, JsonNumberOverflowIsAnErrorNotOutOfRange) {
  // fuzz_tokenizer_config: nlohmann throws out_of_range (not parse_error) for 1E400; it escaped.
  const std::string tj = test::tiny_tokenizer_json();
  expect_upg_error([&] { Tokenizer::from_json_strings(tj, R"({"eos_token_id": 151645E151643})"); },
                   {"tokenizer_config.json", "malformed JSON"});
  expect_upg_error([&] { Tokenizer::from_json_strings(tj, "", "[1E400]"); }, {"generation_config.json"});
  expect_upg_error([&] { Tokenizer::from_json_strings(R"({"model": {"type": "BPE", "vocab": {"a": 1e999}}})"); },
                   {"tokenizer.json"});
}

TEST(UntrustedInput, ChatTemplateFieldOfTheWrongTypeIsAnError) {
  expect_upg_error([] { chat_template_from_config(R"({"chat_template": 5})", "m/tokenizer_config.json"); },
                   {"m/tokenizer_config.json", "chat_template"});
  expect_upg_error([] { chat_template_from_config(R"({"chat_template": [{"name": 1, "template": "x"}]})", "t.json"); },
                   {"t.json", "chat_template"});
  expect_upg_error([] { chat_template_from_config("{", "t.json"); }, {"t.json", "invalid JSON"});
  EXPECT_EQ(chat_template_from_config(R"({"chat_template": [{"name": "default", "template": "D"}]})", "t").value(), "D");
  EXPECT_FALSE(chat_template_from_config(R"({"chat_template": null})", "t").has_value());
  EXPECT_FALSE(chat_template_from_config("[]", "t").has_value());
}

TEST(UntrustedInput, GgufTokenThatIsNotUtf8IsAnError) {
  // fuzz_gguf_vocab: such a token made a tokenizer.json that nlohmann could not serialise
  // (type_error 316 escaped).
  GgufVocab v;
  v.model = "gpt2";
  v.tokens = {"a", "b", "ab", "\xC3("};
  v.merges = {"a b"};
  expect_upg_error([&] { vocab_import::tokenizer_json_from_gguf(v); }, {"token 3", "UTF-8"});
  v.tokens[3] = "c";
  v.merges.push_back("\xFF b");
  expect_upg_error([&] { vocab_import::tokenizer_json_from_gguf(v); }, {"merge 1", "UTF-8"});
}

TEST(UntrustedInput, ChatTemplateNumbersOutOfRangeAreNotExceptions) {
  // fuzz_chat_template: std::stod threw std::out_of_range for 1e999 (it escaped the parser); a
  // numeric attribute path past int64 made std::stoll throw in the map/sort/... filters.
  EXPECT_EQ(ChatTemplate("{{ 1e999 }} {{ -1e999 }} {{ 1e-999 }}").render(json::object()), "inf -inf 0.0");
  EXPECT_EQ(ChatTemplate("{{ [{'a': 1}] | map(attribute='99999999999999999999') | list | length }}").render(json::object()),
            "1");
  expect_upg_error([] { ChatTemplate("{{ 99999999999999999999 }}"); }, {"too large"});
}

// ---------------------------------------------------------------- PCRE2

TEST(UntrustedInput, RegexMatchLimitIsAnErrorNamingThePatternNotANoMatch) {
  const Regex re("^(\\w+\\s?)*$", "test");
  // Exponential backtracking: the limit stops it within a fraction of a second.
  const std::string evil = std::string(40, 'a') + "!";
  const auto t0 = std::chrono::steady_clock::now();
  expect_upg_error([&] { re.find_all(evil); }, {"(\\w+\\s?)*$", "limit"});
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 20s);
  EXPECT_EQ(re.find_all("ab cd").size(), 1u);  // an ordinary text still matches
  EXPECT_TRUE(re.find_all("!").empty());       // and no match is still no match
}

TEST(UntrustedInput, HostilePreTokenizerRegexFailsEncodeWithAnError) {
  const Tokenizer tok = Tokenizer::from_json_strings(tokenizer_with([](json& j) {
    j["pre_tokenizer"] = {{"type", "Split"}, {"pattern", {{"Regex", "(a|aa)+$"}}}, {"behavior", "Isolated"}};
  }));
  expect_upg_error([&] { tok.encode(std::string(64, 'a') + "b"); }, {"(a|aa)+$"});
}

// ---------------------------------------------------------------- context bounds

const Model& tiny_model() {
  static const auto model = test::tiny_text_model("untrusted");
  return *model;
}

TEST(UntrustedInput, HugeContextIsRefusedWithAMessage) {
  // upg run -c 2000000000: an error naming the limit, not bad_alloc.
  expect_upg_error([] { Session s(tiny_model(), 2000000000); }, {"context length", "2000000000"});
  EXPECT_NO_THROW(Session(tiny_model(), 64));
  SchedulerOptions o;
  o.max_context = int64_t{1} << 40;
  expect_upg_error([&] { Scheduler s(tiny_model(), test::tiny_text_tokenizer(), o); }, {"context length"});
}

// ---------------------------------------------------------------- scheduler thread

TEST(UntrustedInput, AnExceptionOnTheSchedulerThreadFailsTheRequestsInsteadOfTerminating) {
  static const Tokenizer tok = test::tiny_text_tokenizer();
  std::atomic<int> calls{0};
  SchedulerOptions o;
  o.max_batch = 2;
  o.max_step_tokens = 16;
  o.kv.type = KvType::F32;
  o.on_step = [&](int, int) {
    if (calls++ == 0) throw std::runtime_error("observer failed");
  };
  Scheduler sched(tiny_model(), tok, o);
  auto run = [&] {
    GenerationRequest r;
    r.prompt = {97, 98, 99};
    r.max_new_tokens = 3;
    r.sampling.temperature = 0;
    r.stop_at_eos = false;
    auto h = sched.submit(r);
    GenerationUpdate u;
    for (int i = 0; i < 100 && !u.done; ++i) h->wait(u, 1s);
    return u;
  };
  const GenerationUpdate first = run();
  EXPECT_TRUE(first.done);
  EXPECT_EQ(first.finish_reason, "error");
  EXPECT_NE(first.error.find("observer failed"), std::string::npos) << first.error;
  const GenerationUpdate second = run();  // the worker goes on
  EXPECT_TRUE(second.done);
  EXPECT_EQ(second.finish_reason, "length");
}

}  // namespace
}  // namespace upg
