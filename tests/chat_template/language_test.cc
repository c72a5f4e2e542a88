// Jinja constructs one at a time (testdata/language_cases.json, rendered by Python Jinja2 under
// transformers' chat-template environment by testdata/make_language_cases.py): whitespace
// control, literals, operators, statements, filters, tests, methods, globals, printing and
// errors. Each rendering must be equal byte for byte; each Python error must be an error here
// too, with Python's message inside ours.
#include <fstream>
#include <sstream>
#include <string>

#include "common/chat_template/json_conversion.h"
#include "common/chat_template/template.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace flatfleet::chat_template {
namespace {

using Json = nlohmann::ordered_json;

std::tm FixedNow() {
  std::tm now{};
  now.tm_year = 2025 - 1900;
  now.tm_mon = 2;
  now.tm_mday = 9;
  now.tm_hour = 14;
  now.tm_min = 5;
  now.tm_sec = 7;
  now.tm_wday = 0;
  now.tm_yday = 67;
  return now;
}

TEST(ChatTemplateLanguage, EveryCaseMatchesJinja2) {
  std::ifstream in(std::string(FLATFLEET_SOURCE_DIR) +
                   "/tests/chat_template/testdata/language_cases.json");
  ASSERT_TRUE(in) << "missing testdata/language_cases.json";
  std::stringstream text;
  text << in.rdbuf();
  const Json data = Json::parse(text.str());
  absl::StatusOr<Value> variables_value = ValueFromJson(data["variables"]);
  ASSERT_TRUE(variables_value.ok()) << variables_value.status();
  ValueDict variables;
  for (const auto& [key, value] : variables_value->dict().entries()) variables.Set(key, value);

  ASSERT_GE(data["cases"].size(), 90u);
  for (const Json& test_case : data["cases"]) {
    const std::string name = test_case["name"];
    SCOPED_TRACE(name);
    TemplateOptions options;
    options.now = FixedNow;
    absl::StatusOr<Template> parsed =
        Template::Parse(test_case["template"].get<std::string>(), options);
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    absl::StatusOr<std::string> rendered = parsed->Render(variables);
    if (test_case.contains("rendered")) {
      ASSERT_TRUE(rendered.ok()) << rendered.status();
      EXPECT_EQ(*rendered, test_case["rendered"].get<std::string>());
      continue;
    }
    ASSERT_FALSE(rendered.ok()) << "rendered instead of failing: " << *rendered;
    const std::string error = test_case["error"];
    if (test_case["error_type"] == "TemplateError") {
      EXPECT_TRUE(RaisedByTemplate(rendered.status())) << rendered.status();
      EXPECT_EQ(rendered.status().message(), error);
    } else {
      EXPECT_FALSE(RaisedByTemplate(rendered.status()));
      EXPECT_THAT(std::string(rendered.status().message()), testing::HasSubstr(error));
      EXPECT_THAT(std::string(rendered.status().message()), testing::HasSubstr("line 1, column"));
    }
  }
}

}  // namespace
}  // namespace flatfleet::chat_template
