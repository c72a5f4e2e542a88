// Errors and resource limits: syntax errors name the position, runtime errors name where they
// happened, and no template can recurse, loop or allocate without bound.
#include <string>

#include "common/chat_template/template.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace flatfleet::chat_template {
namespace {

using testing::HasSubstr;

absl::StatusOr<std::string> Render(const std::string& source, TemplateOptions options = {}) {
  absl::StatusOr<Template> parsed = Template::Parse(source, std::move(options));
  if (!parsed.ok()) return parsed.status();
  return parsed->Render(ValueDict());
}

std::string ErrorOf(const std::string& source, TemplateOptions options = {}) {
  absl::StatusOr<std::string> rendered = Render(source, std::move(options));
  EXPECT_FALSE(rendered.ok()) << "rendered: " << *rendered;
  return rendered.ok() ? "" : std::string(rendered.status().message());
}

TEST(ChatTemplateErrors, SyntaxErrorsNameLineAndColumn) {
  EXPECT_THAT(ErrorOf("ab\n{% if x %}\nno end"),
              HasSubstr("line 3, column 7: unexpected end of template, expected 'elif' or "
                        "'else' or 'endif'"));
  EXPECT_THAT(ErrorOf("{{ 1 + }}"), HasSubstr("line 1, column 8: expected an expression"));
  EXPECT_THAT(ErrorOf("x\n  {{ 'open"), HasSubstr("line 2, column 6: unterminated string"));
  EXPECT_THAT(ErrorOf("{% frobnicate %}"), HasSubstr("unknown or unsupported tag 'frobnicate'"));
  EXPECT_THAT(ErrorOf("{# never closed"), HasSubstr("line 1, column 1: missing end of comment"));
  EXPECT_THAT(ErrorOf("{% break %}"), HasSubstr("'break' outside of a loop"));
  EXPECT_THAT(ErrorOf("{{ a ) }}"), HasSubstr("unexpected ')'"));
  EXPECT_THAT(ErrorOf("{{ 99999999999999999999 }}"), HasSubstr("integer literal out of range"));
  EXPECT_THAT(ErrorOf("{{ 'a' @ 'b' }}"), HasSubstr("unexpected character '@'"));
}

TEST(ChatTemplateErrors, RuntimeErrorsNamePosition) {
  EXPECT_THAT(ErrorOf("ok\n{{ 'a' + 1 }}"),
              HasSubstr("line 2, column 8: can only concatenate str (not \"int\") to str"));
  EXPECT_THAT(ErrorOf("{{ missing.attr }}"), HasSubstr("'missing' is undefined"));
  EXPECT_THAT(ErrorOf("{{ 1 // 0 }}"), HasSubstr("division or modulo by zero"));
  EXPECT_THAT(ErrorOf("{{ x | nosuchfilter }}"), HasSubstr("no filter named 'nosuchfilter'"));
  EXPECT_THAT(ErrorOf("{{ x is nosuchtest }}"), HasSubstr("no test named 'nosuchtest'"));
  EXPECT_THAT(ErrorOf("{% set x = 1 %}{% set x.y = 2 %}"),
              HasSubstr("cannot assign attribute on non-namespace object 'x'"));
  EXPECT_THAT(ErrorOf("{{ 9223372036854775807 + 1 }}"), HasSubstr("does not fit in 64 bits"));
  EXPECT_THAT(ErrorOf("{{ namespace(a=1) | tojson }}"),
              HasSubstr("Object of type Namespace is not JSON serializable"));
}

TEST(ChatTemplateErrors, RaiseExceptionGivesTheTemplatesMessageExactly) {
  absl::StatusOr<std::string> rendered =
      Render("before{{ raise_exception('Roles must alternate: ' ~ 3) }}after");
  ASSERT_FALSE(rendered.ok());
  EXPECT_TRUE(RaisedByTemplate(rendered.status()));
  EXPECT_EQ(rendered.status().message(), "Roles must alternate: 3");
}

TEST(ChatTemplateLimits, DeepNestingIsRefusedAtParse) {
  std::string deep_expression = std::string(500, '(') + "1" + std::string(500, ')');
  EXPECT_THAT(ErrorOf("{{ " + deep_expression + " }}"), HasSubstr("nested deeper than"));
  std::string deep_blocks;
  for (int i = 0; i < 300; ++i) deep_blocks += "{% if true %}";
  EXPECT_THAT(ErrorOf(deep_blocks), HasSubstr("nested deeper than"));
  EXPECT_THAT(ErrorOf("{{ " + std::string(5000, '-') + "1 }}"), HasSubstr("nested deeper than"));
  EXPECT_THAT(ErrorOf("{{ " + std::string(5000, '[') + std::string(5000, ']') + " }}"),
              HasSubstr("nested deeper than"));
}

TEST(ChatTemplateLimits, MacroRecursionIsBounded) {
  EXPECT_THAT(ErrorOf("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}"),
              HasSubstr("macro calls nested deeper than 64"));
}

TEST(ChatTemplateLimits, OutputSizeIsBounded) {
  TemplateOptions options;
  options.limits.max_output_bytes = 1000;
  EXPECT_THAT(ErrorOf("{% for i in range(2000) %}x{% endfor %}", options),
              HasSubstr("the output exceeds 1000 bytes"));
  absl::StatusOr<std::string> fits = Render("{% for i in range(1000) %}x{% endfor %}", options);
  ASSERT_TRUE(fits.ok()) << fits.status();
  EXPECT_EQ(fits->size(), 1000u);
}

TEST(ChatTemplateLimits, LoopIterationsAreBounded) {
  TemplateOptions options;
  options.limits.max_loop_iterations = 100;
  EXPECT_THAT(
      ErrorOf("{% for i in range(10) %}{% for j in range(11) %}{% endfor %}{% endfor %}", options),
      HasSubstr("more than 100 loop iterations"));
  options.limits.max_loop_iterations = 10000;
  EXPECT_THAT(ErrorOf("{% for i in range(100000) %}{% for j in range(100000) %}{{ loop.index }}"
                      "{% endfor %}{% endfor %}",
                      options),
              HasSubstr("more than 10000 loop iterations"));
}

TEST(ChatTemplateLimits, BuiltValuesAreBounded) {
  EXPECT_THAT(ErrorOf("{{ range(100000000000) | length }}"), HasSubstr("exceeds the limit"));
  EXPECT_THAT(ErrorOf("{{ 'x' * 100000000000 }}"), HasSubstr("exceeds the limit"));
  EXPECT_THAT(ErrorOf("{{ [1] * 100000000000 }}"), HasSubstr("exceeds the limit"));
  // Doubling a string in a loop runs into the string limit after a few rounds.
  EXPECT_THAT(ErrorOf("{% set ns = namespace(s='xxxxxxxx') %}{% for i in range(64) %}"
                      "{% set ns.s = ns.s + ns.s %}{% endfor %}"),
              HasSubstr("exceeds the limit"));
  // Growing a list by copying it each round runs out of the work budget (quadratic work).
  TemplateOptions small_budget;
  small_budget.limits.max_work_units = 1 << 20;
  EXPECT_THAT(ErrorOf("{% set ns = namespace(l=[]) %}{% for i in range(100000) %}"
                      "{% set ns.l = ns.l + [i] %}{% endfor %}",
                      small_budget),
              HasSubstr("work budget"));
  EXPECT_THAT(ErrorOf("{{ ('a' * 4000000) | replace('a', 'bb') }}"),
              HasSubstr("exceeds the limit"));
}

TEST(ChatTemplateLimits, NamespacesCannotHoldThemselves) {
  // Reference-counted values would leak a cycle; every way of closing one is refused.
  EXPECT_THAT(ErrorOf("{% set ns = namespace() %}{% set ns.self = ns %}"),
              HasSubstr("cannot hold that namespace itself"));
  EXPECT_THAT(ErrorOf("{% set ns = namespace() %}{% set ns.items = [1, {'k': [ns]}] %}"),
              HasSubstr("cannot hold that namespace itself"));
  EXPECT_THAT(ErrorOf("{% set a = namespace() %}{% set b = namespace(a=a) %}{% set a.b = b %}"),
              HasSubstr("cannot hold that namespace itself"));
  EXPECT_THAT(ErrorOf("{% set ns = namespace() %}{% set d = {'n': ns} %}{% set ns.f = d.items %}"),
              HasSubstr("or a function"));
  // Another namespace, lists and dicts are fine.
  absl::StatusOr<std::string> rendered = Render(
      "{% set a = namespace(x=1) %}{% set b = namespace() %}{% set b.a = a %}"
      "{% set b.l = [a, {'k': a}] %}{{ b.a.x }}{{ b.l[1].k.x }}");
  ASSERT_TRUE(rendered.ok()) << rendered.status();
  EXPECT_EQ(*rendered, "11");
}

}  // namespace
}  // namespace flatfleet::chat_template
