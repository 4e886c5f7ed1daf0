// The Jinja interpreter against Jinja2's documented behaviour, in the
// environment transformers renders chat templates with (trim_blocks,
// lstrip_blocks, loop controls). Expected strings are what Jinja2 3.1 prints.
#include "jinja/template.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/testing/status_matchers.h"

namespace openforce::jinja {
namespace {

using ::openforce::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;

std::string Render(
    const std::string& source,
    const nlohmann::ordered_json& context = nlohmann::ordered_json::object()) {
  absl::StatusOr<Template> parsed = Template::Parse(source);
  EXPECT_OK(parsed) << source;
  if (!parsed.ok()) return "<parse error>";
  absl::StatusOr<std::string> out = parsed->Render(Value::FromJson(context));
  EXPECT_OK(out) << source;
  return out.ok() ? *out : "<render error>";
}

absl::Status RenderError(
    const std::string& source,
    const nlohmann::ordered_json& context = nlohmann::ordered_json::object()) {
  absl::StatusOr<Template> parsed = Template::Parse(source);
  if (!parsed.ok()) return parsed.status();
  return parsed->Render(Value::FromJson(context)).status();
}

TEST(JinjaTest, WhitespaceControlAsTransformersConfiguresIt) {
  // trim_blocks drops the newline after a block tag; lstrip_blocks the
  // indentation before one.
  EXPECT_EQ(Render("{% if true %}\n  yes\n{% endif %}\nend"), "  yes\nend");
  EXPECT_EQ(Render("a\n    {% if true %}b{% endif %}"), "a\nb");
  // "-" strips all whitespace on that side, newlines included.
  EXPECT_EQ(Render("a  \n  {{- 'b' -}}  \n  c"), "abc");
  EXPECT_EQ(Render("a {%- if true -%} b {%- endif -%} c"), "abc");
  // Output tags are not lstripped; one trailing newline is dropped.
  EXPECT_EQ(Render("  {{ 'x' }}\n"), "  x");
  EXPECT_EQ(Render("a{# a comment #}b"), "ab");
}

TEST(JinjaTest, ExpressionsFollowPython) {
  EXPECT_EQ(Render("{{ 1 + 2 * 3 }} {{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} "
                   "{{ -7 % 3 }} {{ 2 ** 10 }} {{ 7 / 2 }}"),
            "7 3 -4 1 2 1024 3.5");
  EXPECT_EQ(Render("{{ 'a' ~ 1 ~ none }} {{ 'ab' * 3 }} {{ [1] + [2] }}"),
            "a1None ababab [1, 2]");
  EXPECT_EQ(Render("{{ 1 if x else 2 }} {{ 'y' if not x }}!", {{"x", false}}),
            "2 y!");
  EXPECT_EQ(
      Render("{{ x and y }} {{ x or y }} {{ not x }}", {{"x", 0}, {"y", "s"}}),
      "0 s True");
  EXPECT_EQ(Render("{{ 'b' in 'abc' }} {{ 2 not in [1, 3] }} {{ 'k' in d }}",
                   {{"d", {{"k", 1}}}}),
            "True True True");
  EXPECT_EQ(Render("{{ 1 == 1.0 }} {{ 'a' < 'b' }} {{ none }} {{ true }}"),
            "True True None True");
  EXPECT_EQ(Render("{{ [1, 'a', none, {'k': [true]}] }} {{ (1, 2) }}"),
            "[1, 'a', None, {'k': [True]}] [1, 2]");
  EXPECT_EQ(Render("{{ 0.1 + 0.2 }} {{ 2.0 }} {{ 1e20 }}"),
            "0.30000000000000004 2.0 1e+20");
}

TEST(JinjaTest, SubscriptsSlicesAndAttributes) {
  const nlohmann::ordered_json context = {
      {"items", {1, 2, 3, 4}},
      {"m", {{"role", "user"}, {"content", "hi"}}},
      {"s", "hello"}};
  EXPECT_EQ(Render("{{ items[0] }} {{ items[-1] }} {{ items[1:3] }} "
                   "{{ items[::-1] }} {{ items[::2] }} {{ s[1:] }} {{ s[-1] }}",
                   context),
            "1 4 [2, 3] [4, 3, 2, 1] [1, 3] ello o");
  EXPECT_EQ(Render("{{ m.role }} {{ m['content'] }} [{{ m.missing }}] "
                   "{{ m.missing is defined }} {{ items[9] is defined }}",
                   context),
            "user hi [] False False");
}

TEST(JinjaTest, ForLoopsWithLoopVariablesElseAndFilters) {
  const nlohmann::ordered_json context = {{"xs", {"a", "b", "c"}}};
  EXPECT_EQ(Render("{% for x in xs %}{{ loop.index }}{{ loop.index0 }}"
                   "{{ loop.revindex }}{{ loop.first }}{{ loop.last }}"
                   "{{ loop.length }}{{ x }};{% endfor %}",
                   context),
            "103TrueFalse3a;212FalseFalse3b;321FalseTrue3c;");
  EXPECT_EQ(Render("{% for x in xs if x != 'b' %}{{ x }}{{ loop.cycle('+', "
                   "'-') }}{% endfor %}",
                   context),
            "a+c-");
  EXPECT_EQ(Render("{% for x in [] %}x{% else %}empty{% endfor %}"), "empty");
  EXPECT_EQ(Render("{% for k, v in d.items() %}{{ k }}={{ v }},{% endfor %}",
                   {{"d", {{"z", 1}, {"a", 2}}}}),
            "z=1,a=2,");  // insertion order, as Python dicts
  EXPECT_EQ(Render("{% for x in xs %}{% if x == 'b' %}{% break %}{% endif %}"
                   "{{ x }}{% endfor %}|{% for x in xs %}{% if x == 'b' %}"
                   "{% continue %}{% endif %}{{ x }}{% endfor %}",
                   context),
            "a|ac");
  EXPECT_EQ(Render("{% for x in xs %}{{ loop.previtem }}>{{ x }} {% endfor %}",
                   context),
            ">a a>b b>c ");
}

TEST(JinjaTest, SetScopingAndNamespaces) {
  // A set inside a loop does not leak out of it; namespace() carries state.
  EXPECT_EQ(Render("{% set n = 0 %}{% for i in range(3) %}{% set n = n + 1 %}"
                   "{% endfor %}{{ n }}"),
            "0");
  EXPECT_EQ(Render("{% set ns = namespace(n=0, seen=false) %}{% for i in "
                   "range(3) %}{% set ns.n = ns.n + i %}{% endfor %}{{ ns.n }} "
                   "{{ ns.seen }}"),
            "3 False");
  EXPECT_EQ(Render("{% if true %}{% set x = 5 %}{% endif %}{{ x }}"), "5");
  EXPECT_EQ(Render("{% set a, b = 1, 2 %}{{ a }}{{ b }}"), "12");
  EXPECT_EQ(Render("{% set block %}in {{ 'side' }}{% endset %}[{{ block }}]"),
            "[in side]");
}

TEST(JinjaTest, MacrosCallAndFilterBlocks) {
  EXPECT_EQ(Render("{% macro greet(name, punct='!') %}Hi {{ name }}{{ punct }}"
                   "{% endmacro %}{{ greet('Ann') }} {{ greet('Bo', punct='?') "
                   "}}"),
            "Hi Ann! Hi Bo?");
  EXPECT_EQ(Render("{% macro box() %}[{{ caller() }}]{% endmacro %}"
                   "{% call box() %}inside{% endcall %}"),
            "[inside]");
  EXPECT_EQ(Render("{% filter upper %}quiet{% endfilter %}"), "QUIET");
  EXPECT_EQ(Render("{% generation %}kept{% endgeneration %}"), "kept");
}

TEST(JinjaTest, FiltersChatTemplatesUse) {
  EXPECT_EQ(Render("{{ '  x  ' | trim }}|{{ [1, 2] | length }}|{{ 'ab' | "
                   "upper }}|{{ none | default('d') }}|{{ '' | default('e', "
                   "true) }}|{{ [3, 1, 2] | sort | join(',') }}|{{ [1, 2] | "
                   "first }}{{ [1, 2] | last }}|{{ 'a b' | replace(' ', '_') "
                   "}}|{{ -3 | abs }}|{{ '12' | int + 1 }}"),
            "x|2|AB|None|e|1,2,3|12|a_b|3|13");  // default replaces
                                                 // undefined, not none
  EXPECT_EQ(Render("{{ d | tojson }}",
                   {{"d", {{"b", {1, 2.5, "é\n"}}, {"a", nullptr}}}}),
            "{\"b\": [1, 2.5, \"é\\n\"], \"a\": null}");
  EXPECT_EQ(Render("{{ d | tojson(indent=2) }}", {{"d", {{"k", {1}}}}}),
            "{\n  \"k\": [\n    1\n  ]\n}");
  EXPECT_EQ(Render("{{ ms | map(attribute='role') | join(' ') }} "
                   "{{ ms | selectattr('role', 'equalto', 'user') | list | "
                   "length }} {{ [1, 2, 3, 4] | select('even') | list }}",
                   {{"ms", {{{"role", "user"}}, {{"role", "bot"}}}}}),
            "user bot 1 [2, 4]");
  EXPECT_EQ(Render("{{ 'a\nb' | indent(2) }}|{{ 'x' | indent(2, true) }}"),
            "a\n  b|  x");
}

TEST(JinjaTest, TestsAndStringMethods) {
  EXPECT_EQ(Render("{{ 'x' is string }}{{ 1 is number }}{{ {} is mapping }}"
                   "{{ [] is iterable }}{{ none is none }}{{ 4 is even }}"
                   "{{ 3 is divisibleby 3 }}{{ x is not defined }}"
                   "{{ false is false }}{{ 1 is sameas true }}"),
            "TrueTrueTrueTrueTrueTrueTrueTrueTrueFalse");
  EXPECT_EQ(Render("{{ s.strip() }}|{{ s.lstrip() }}|{{ s.rstrip('\\n ') }}|"
                   "{{ s.split('|') }}|{{ 'a b  c'.split() }}|"
                   "{{ 'x'.startswith('x') }}{{ 'xy'.endswith(('z', 'y')) }}|"
                   "{{ 'Hi'.lower() }}{{ 'hi'.upper() }}{{ 'a-b'.replace('-', "
                   "'+') }}|{{ d.get('k') }}{{ d.get('z', 0) }}|"
                   "{{ d.keys() | list }}",
                   {{"s", " a|b \n"}, {"d", {{"k", 1}}}}),
            "a|b|a|b \n| a|b|[' a', 'b \\n']|['a', 'b', 'c']|TrueTrue|"
            "hiHIa+b|10|['k']");
}

TEST(JinjaTest, ErrorsNameTheConstructAndLine) {
  EXPECT_THAT(RenderError("line one\n{% include 'x' %}"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("line 2"), HasSubstr("'include'"))));
  EXPECT_THAT(RenderError("{{ x | frobnicate }}"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("unsupported filter 'frobnicate'")));
  EXPECT_THAT(RenderError("\n\n{{ x is wobbly }}"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("line 3"),
                             HasSubstr("unsupported test 'wobbly'"))));
  EXPECT_THAT(RenderError("{{ 'a'.zfill(3) }}"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("not a supported function or method")));
  EXPECT_THAT(RenderError("{% if x %}unclosed"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("endif")));
  EXPECT_THAT(RenderError("{{ 'unterminated }}"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("unclosed string")));
  EXPECT_THAT(RenderError("{{ raise_exception('roles must alternate') }}"),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("roles must alternate")));
  EXPECT_THAT(RenderError("{{ missing.attr }}"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("'attr' of an undefined value")));
  EXPECT_THAT(RenderError("{{ 1 + 'a' }}"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("unsupported operand")));
  EXPECT_THAT(
      RenderError("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("too deeply")));
  // Output is bounded.
  absl::StatusOr<Template> big = Template::Parse(
      "{% for i in range(100000) %}{{ 'xxxxxxxxxx' }}{% endfor %}");
  ASSERT_OK(big);
  EXPECT_THAT(big->Render(Value::Dict({}), 1000),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       HasSubstr("exceeds 1000 bytes")));
}

}  // namespace
}  // namespace openforce::jinja
