// Every case of ../shared/fixtures/chat-templates/expected.json: the rendering equals Python
// Jinja2's byte for byte, or the render fails with the template's own raise_exception message.
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "common/chat_template/chat_template.h"
#include "common/chat_template/json_conversion.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace flatfleet::chat_template {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::ordered_json;

fs::path FixtureDir() {
  const char* env = std::getenv("FLATFLEET_SHARED_DIR");
  return fs::path(env != nullptr ? env : FLATFLEET_SHARED_DIR) / "fixtures" / "chat-templates";
}

std::string ReadFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

Json ReadJson(const fs::path& path) { return Json::parse(ReadFile(path)); }

// The fixtures' fixed clock: 2025-03-09 14:05:07.
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

std::optional<std::string> OptionalToken(const Json& value) {
  if (value.is_null()) return std::nullopt;
  return value.get<std::string>();
}

TEST(ChatTemplateFixtures, EveryCaseMatchesJinja2) {
  const fs::path dir = FixtureDir();
  if (!fs::exists(dir / "expected.json")) GTEST_SKIP() << "no fixtures at " << dir;
  const Json templates = ReadJson(dir / "templates.json");
  const Json conversations = ReadJson(dir / "conversations.json");
  const Json cases = ReadJson(dir / "expected.json");
  ASSERT_EQ(cases.size(), 276u);

  std::map<std::string, std::string> template_files;
  for (const Json& t : templates) template_files[t["name"]] = t["file"];
  std::map<std::string, const Json*> conversation_by_id;
  for (const Json& c : conversations) conversation_by_id[c["id"]] = &c;

  int rendered = 0;
  int errors = 0;
  for (const Json& test_case : cases) {
    SCOPED_TRACE(test_case["id"].get<std::string>());
    ChatTemplateSource source;
    source.source = ReadFile(dir / template_files.at(test_case["template"]));
    source.origin = test_case["template"];
    source.bos_token = OptionalToken(test_case["bos_token"]);
    source.eos_token = OptionalToken(test_case["eos_token"]);
    TemplateOptions options;
    options.now = FixedNow;
    absl::StatusOr<ChatTemplate> chat = ChatTemplate::Create(source, options);
    ASSERT_TRUE(chat.ok()) << chat.status();

    const Json& conversation = *conversation_by_id.at(test_case["conversation"]);
    absl::StatusOr<Value> messages = ValueFromJson(conversation["messages"]);
    ASSERT_TRUE(messages.ok()) << messages.status();
    Value tools = Value::None();
    if (conversation.contains("tools")) {
      absl::StatusOr<Value> parsed = ValueFromJson(conversation["tools"]);
      ASSERT_TRUE(parsed.ok()) << parsed.status();
      tools = *parsed;
    }
    absl::StatusOr<std::string> output =
        chat->Render(*messages, test_case["add_generation_prompt"].get<bool>(), tools);
    if (test_case.contains("rendered")) {
      ASSERT_TRUE(output.ok()) << output.status();
      EXPECT_EQ(*output, test_case["rendered"].get<std::string>());
      ++rendered;
    } else {
      ASSERT_FALSE(output.ok()) << "rendered instead of failing: " << *output;
      EXPECT_TRUE(RaisedByTemplate(output.status())) << output.status();
      EXPECT_EQ(output.status().message(), test_case["error"].get<std::string>());
      ++errors;
    }
  }
  EXPECT_EQ(rendered, 248);
  EXPECT_EQ(errors, 28);
}

}  // namespace
}  // namespace flatfleet::chat_template
