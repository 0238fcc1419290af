// Chat templates: byte-for-byte agreement with python3-jinja2 (the transformers environment) on
// tests/data/chat_templates/cases.json, which tests/scripts/chat_template_oracle.py generated and
// the script test test_chat_template_oracle.sh re-checks against jinja2; plus error reporting,
// runaway-template limits and template discovery.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "base/mapped_file.h"
#include "test_util.h"
#include "tokenizer/chat_template.h"

namespace {

using nlohmann::ordered_json;
using upg::ChatTemplate;
using upg::ChatTemplateException;
using upg::ChatTemplateOptions;
using upg::Error;

std::string data_dir() { return upg::test::source_dir() + "/tests/data/chat_templates"; }

// The render outcome of one case: output, or the error kind and message.
struct Outcome {
  bool ok = false;
  bool raised = false;  // raise_exception() in the template
  std::string text;     // output, or the error message
};

Outcome run_case(const ordered_json& c, const ChatTemplateOptions& opt) {
  Outcome r;
  try {
    if (c.contains("template")) {
      std::string source = upg::read_text_file(data_dir() + "/" + c["template"].get<std::string>());
      r.text = upg::apply_chat_template(source, c["messages"], c["add_generation_prompt"].get<bool>(),
                                        c["bos_token"].get<std::string>(),
                                        c["eos_token"].get<std::string>(), c["extra"], opt);
    } else {
      r.text = ChatTemplate(c["source"].get<std::string>()).render(c["context"], opt);
    }
    r.ok = true;
  } catch (const ChatTemplateException& e) {
    r.raised = true;
    r.text = e.what();
  } catch (const Error& e) {
    r.text = e.what();
  }
  return r;
}

std::string first_difference(const std::string& a, const std::string& b) {
  size_t i = 0;
  while (i < a.size() && i < b.size() && a[i] == b[i]) ++i;
  auto around = [&](const std::string& s) { return ordered_json(s.substr(i < 20 ? 0 : i - 20, 60)).dump(); };
  return "first difference at byte " + std::to_string(i) + ": expected ..." + around(a) +
         "..., got ..." + around(b) + "...";
}

TEST(ChatTemplate, AgreesWithJinja2OnEveryCase) {
  std::ifstream in(data_dir() + "/cases.json");
  ASSERT_TRUE(in) << "missing " << data_dir() << "/cases.json";
  ordered_json all = ordered_json::parse(in);
  // strftime_now() must see the oracle's fixed local time.
  std::tm tm{};
  ASSERT_EQ(std::sscanf(all["strftime_now"].get<std::string>().c_str(), "%d-%d-%dT%d:%d:%d", &tm.tm_year,
                        &tm.tm_mon, &tm.tm_mday, &tm.tm_hour, &tm.tm_min, &tm.tm_sec), 6);
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  tm.tm_isdst = -1;
  ChatTemplateOptions opt;
  opt.now = std::mktime(&tm);

  size_t n = 0, n_templates = 0, n_errors = 0;
  for (const auto& c : all["cases"]) {
    SCOPED_TRACE(c["name"].get<std::string>());
    Outcome got = run_case(c, opt);
    ++n;
    n_templates += c.contains("template");
    if (c["error"].is_null()) {
      ASSERT_TRUE(c["expected"].is_string());
      const std::string want = c["expected"].get<std::string>();
      EXPECT_TRUE(got.ok) << "jinja2 rendered it, we threw: " << got.text;
      if (got.ok) {
        EXPECT_EQ(got.text, want) << first_difference(want, got.text);
      }
    } else {
      ++n_errors;
      EXPECT_FALSE(got.ok) << "jinja2 raised, we rendered: " << ordered_json(got.text).dump();
      if (c["error"]["kind"] == "raise") {
        EXPECT_TRUE(got.raised) << "expected raise_exception, got: " << got.text;
        EXPECT_EQ(got.text, c["error"]["message"].get<std::string>());
      } else {
        EXPECT_FALSE(got.raised) << got.text;
      }
    }
  }
  EXPECT_GE(n, 100u);
  EXPECT_GE(n_templates, 40u);
  EXPECT_GE(n_errors, 20u);
}

// ---- error reporting

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(ChatTemplate, SyntaxErrorsNameLineAndColumn) {
  std::string msg = error_of([] { ChatTemplate("line one\n{% if x %}\n  {{ 1 + }}\n{% endif %}"); });
  EXPECT_NE(msg.find("line 3, column 10"), std::string::npos) << msg;

  msg = error_of([] { ChatTemplate("{% for x in xs %}\nno end"); });
  EXPECT_NE(msg.find("endfor"), std::string::npos) << msg;
  EXPECT_NE(msg.find("line 2"), std::string::npos) << msg;

  msg = error_of([] { ChatTemplate("ok\n  {% frobnicate %}"); });
  EXPECT_NE(msg.find("unknown tag 'frobnicate'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("line 2, column 6"), std::string::npos) << msg;

  msg = error_of([] { ChatTemplate("{{ 'unterminated }}"); });
  EXPECT_NE(msg.find("line 1, column 4"), std::string::npos) << msg;

  msg = error_of([] { ChatTemplate("{# never closed"); });
  EXPECT_NE(msg.find("comment"), std::string::npos) << msg;

  msg = error_of([] { ChatTemplate("{% break %}"); });
  EXPECT_NE(msg.find("outside of a loop"), std::string::npos) << msg;

  msg = error_of([] { ChatTemplate("{% include 'x.jinja' %}"); });
  EXPECT_NE(msg.find("not supported"), std::string::npos) << msg;
}

TEST(ChatTemplate, UnknownFilterAndTestAreNamed) {
  ChatTemplate t("a\n{{ x | frobnicate }}");
  std::string msg = error_of([&] { t.render(nlohmann::json{{"x", 1}}); });
  EXPECT_NE(msg.find("unknown filter 'frobnicate'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("line 2"), std::string::npos) << msg;
  msg = error_of([] { ChatTemplate("{{ 1 is frob }}").render(nlohmann::json::object()); });
  EXPECT_NE(msg.find("unknown test 'frob'"), std::string::npos) << msg;
  // Like Jinja 3, an unknown filter in a branch that does not run is no error.
  EXPECT_EQ(ChatTemplate("{% if false %}{{ x | frobnicate }}{% endif %}ok").render(nlohmann::json::object()), "ok");
}

TEST(ChatTemplate, RuntimeErrorsNameTheLine) {
  std::string msg = error_of([] { ChatTemplate("x\ny\n{{ messages[0].content.foo.bar }}").render(nlohmann::json{{"messages", nlohmann::json::array({nlohmann::json{{"role", "user"}}})}}); });
  EXPECT_NE(msg.find("line 3"), std::string::npos) << msg;
  EXPECT_NE(msg.find("no attribute 'content'"), std::string::npos) << msg;
}

TEST(ChatTemplate, RaiseExceptionCarriesTheTemplateMessage) {
  ChatTemplate t("{% if messages[0].role == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}");
  nlohmann::json ctx = {{"messages", {{{"role", "system"}, {"content", "x"}}}}};
  try {
    t.render(ctx);
    FAIL() << "no exception";
  } catch (const ChatTemplateException& e) {
    EXPECT_STREQ(e.what(), "System role not supported");
  }
}

// ---- runaway templates stop with an Error

TEST(ChatTemplate, DeepRecursionIsAnError) {
  ChatTemplate t("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}");
  std::string msg = error_of([&] { t.render(nlohmann::json::object()); });
  EXPECT_NE(msg.find("nested deeper than"), std::string::npos) << msg;
}

TEST(ChatTemplate, DeeplyNestedSourceIsAnError) {
  std::string deep = "{{ " + std::string(5000, '(') + "1" + std::string(5000, ')') + " }}";
  std::string msg = error_of([&] { ChatTemplate t(deep); });
  EXPECT_NE(msg.find("nested deeper than"), std::string::npos) << msg;
  std::string ifs;
  for (int i = 0; i < 3000; ++i) ifs += "{% if true %}";
  msg = error_of([&] { ChatTemplate t(ifs); });
  EXPECT_NE(msg.find("nested deeper than"), std::string::npos) << msg;
}

TEST(ChatTemplate, OutputAndLoopLimits) {
  ChatTemplateOptions opt;
  opt.max_output_bytes = 1000;
  ChatTemplate big("{% for i in range(100000) %}xxxxxxxxxx{% endfor %}");
  std::string msg = error_of([&] { big.render(ordered_json::object(), opt); });
  EXPECT_NE(msg.find("output exceeds the limit"), std::string::npos) << msg;
  msg = error_of([&] { ChatTemplate("{{ 'x' * 100000 }}").render(ordered_json::object(), opt); });
  EXPECT_NE(msg.find("limit"), std::string::npos) << msg;
  // A silent nested loop of 10^10 steps stops at the step budget instead of hanging.
  ChatTemplate slow("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}");
  ChatTemplateOptions small;
  small.max_loop_steps = 200000;
  msg = error_of([&] { slow.render(ordered_json::object(), small); });
  EXPECT_NE(msg.find("loop steps"), std::string::npos) << msg;
}

// ---- API details

TEST(ChatTemplate, ApplyChatTemplateSetsTheVariablesTransformersSets) {
  std::string src =
      "{{ bos_token }}{% for m in messages %}[{{ m.role }}:{{ m.content }}]{% endfor %}"
      "{% if add_generation_prompt %}<gen>{% endif %}{{ eos_token }}|{{ tools is none }}|{{ documents is none }}|"
      "{{ tools_in_user_message }}";
  nlohmann::json msgs = {{{"role", "user"}, {"content", "hi"}}};
  EXPECT_EQ(upg::apply_chat_template(src, msgs, true, "<s>", "</s>"), "<s>[user:hi]<gen></s>|True|True|");
  EXPECT_EQ(upg::apply_chat_template(src, msgs, false, "", "", {{"tools", {1}}, {"tools_in_user_message", false}}),
            "[user:hi]|False|True|False");
}

TEST(ChatTemplate, OrderedJsonKeepsKeyOrderForTojson) {
  ChatTemplate t("{{ x | tojson }}");
  EXPECT_EQ(t.render(ordered_json::parse(R"({"x": {"b": 1, "a": 2}})")), R"({"b": 1, "a": 2})");
  EXPECT_EQ(t.render(nlohmann::json::parse(R"({"x": {"b": 1, "a": 2}})")), R"({"a": 2, "b": 1})");
}

TEST(ChatTemplate, ReusableAndMovable) {
  ChatTemplate a("{{ n * 2 }}");
  ChatTemplate b = std::move(a);
  EXPECT_EQ(b.render(nlohmann::json{{"n", 2}}), "4");
  EXPECT_EQ(b.render(nlohmann::json{{"n", 5}}), "10");
  EXPECT_EQ(b.source(), "{{ n * 2 }}");
}

// ---- finding a model's template

class FindChatTemplate : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("upg_chat_template_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  void write(const std::string& name, const std::string& text) { std::ofstream(dir_ / name) << text; }
  std::filesystem::path dir_;
};

TEST_F(FindChatTemplate, NoneWhenAbsent) {
  EXPECT_FALSE(upg::find_chat_template(dir_.string()).has_value());
  write("tokenizer_config.json", R"({"bos_token": "<s>"})");
  EXPECT_FALSE(upg::find_chat_template(dir_.string()).has_value());
}

TEST_F(FindChatTemplate, StringInTokenizerConfig) {
  write("tokenizer_config.json", R"({"chat_template": "{{ 1 }}\n"})");
  EXPECT_EQ(upg::find_chat_template(dir_.string()).value(), "{{ 1 }}\n");
}

TEST_F(FindChatTemplate, JinjaFileWins) {
  write("tokenizer_config.json", R"({"chat_template": "old"})");
  write("chat_template.jinja", "new");
  EXPECT_EQ(upg::find_chat_template(dir_.string()).value(), "new");
}

TEST_F(FindChatTemplate, ListTakesDefault) {
  write("tokenizer_config.json",
        R"({"chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "D"}]})");
  EXPECT_EQ(upg::find_chat_template(dir_.string()).value(), "D");
  write("tokenizer_config.json", R"({"chat_template": [{"name": "tool_use", "template": "T"}]})");
  std::string msg = error_of([&] { upg::find_chat_template(dir_.string()); });
  EXPECT_NE(msg.find("tool_use"), std::string::npos) << msg;
  write("tokenizer_config.json", R"({"chat_template": )");
  msg = error_of([&] { upg::find_chat_template(dir_.string()); });
  EXPECT_NE(msg.find("tokenizer_config.json"), std::string::npos) << msg;
}

TEST(ChatTemplate, SharedRefAModelTemplate) {
  UPG_NEED_SHARED_DATA(shared);
  auto src = upg::find_chat_template(shared + "/models/refA-phi3-26m");
  ASSERT_TRUE(src.has_value());
  nlohmann::json msgs = {{{"role", "system"}, {"content", "Be brief."}}, {{"role", "user"}, {"content", "Hi"}}};
  EXPECT_EQ(upg::apply_chat_template(*src, msgs, true, "", "<|im_end|>"),
            "<|im_start|>system<|im_sep|>Be brief.<|im_end|><|im_start|>user<|im_sep|>Hi<|im_end|>"
            "<|im_start|>assistant<|im_sep|>");
}

}  // namespace
