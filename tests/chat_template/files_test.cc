// Where a model's chat template is found: chat_template.jinja, tokenizer_config.json's
// chat_template (a string or named templates), special tokens as strings or AddedToken
// objects, the --chat-template override, and clear errors for malformed files.
#include <filesystem>
#include <fstream>
#include <string>

#include "common/chat_template/chat_template_files.h"
#include "common/chat_template/json_conversion.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace flatfleet::chat_template {
namespace {

namespace fs = std::filesystem;
using testing::HasSubstr;

class ChatTemplateFilesTest : public testing::Test {
 protected:
  void SetUp() override {
    dir_ =
        fs::temp_directory_path() / ("chat_template_files_" + std::to_string(::getpid()) + "_" +
                                     testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  void Write(const std::string& name, const std::string& contents) {
    std::ofstream(dir_ / name, std::ios::binary) << contents;
  }

  std::string RenderUser(const ChatTemplateSource& source) {
    absl::StatusOr<ChatTemplate> chat = ChatTemplate::Create(source);
    EXPECT_TRUE(chat.ok()) << chat.status();
    if (!chat.ok()) return "";
    absl::StatusOr<Value> messages =
        ValueFromJson(nlohmann::json::parse(R"([{"role": "user", "content": "hi"}])"));
    absl::StatusOr<std::string> out = chat->Render(*messages, /*add_generation_prompt=*/true);
    EXPECT_TRUE(out.ok()) << out.status();
    return out.ok() ? *out : "";
  }

  fs::path dir_;
};

TEST_F(ChatTemplateFilesTest, NoTemplateIsNullopt) {
  absl::StatusOr<std::optional<ChatTemplateSource>> none = LoadModelChatTemplate(dir_);
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_FALSE(none->has_value());
  Write("tokenizer_config.json", R"({"bos_token": "<s>"})");
  none = LoadModelChatTemplate(dir_);
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_FALSE(none->has_value());
}

TEST_F(ChatTemplateFilesTest, StringTemplateWithAddedTokenObjects) {
  Write("tokenizer_config.json", R"({
    "bos_token": {"__type": "AddedToken", "content": "<s>", "lstrip": false},
    "eos_token": "</s>", "pad_token": null,
    "chat_template": "{{ bos_token }}{% for m in messages %}[{{ m.role }}]{{ m.content }}{% endfor %}{% if add_generation_prompt %}>{{ eos_token }}{{ pad_token is defined }}{% endif %}"})");
  absl::StatusOr<std::optional<ChatTemplateSource>> source = LoadModelChatTemplate(dir_);
  ASSERT_TRUE(source.ok()) << source.status();
  ASSERT_TRUE(source->has_value());
  EXPECT_EQ((*source)->bos_token, "<s>");
  EXPECT_FALSE((*source)->pad_token.has_value());
  EXPECT_THAT((*source)->origin, HasSubstr("tokenizer_config.json"));
  EXPECT_EQ(RenderUser(**source), "<s>[user]hi></s>False");
}

TEST_F(ChatTemplateFilesTest, NamedTemplatesUseDefault) {
  Write("tokenizer_config.json", R"({"chat_template": [
    {"name": "tool_use", "template": "tools"},
    {"name": "default", "template": "plain {{ messages[0].content }}"}]})");
  absl::StatusOr<std::optional<ChatTemplateSource>> source = LoadModelChatTemplate(dir_);
  ASSERT_TRUE(source.ok()) << source.status();
  ASSERT_TRUE(source->has_value());
  EXPECT_EQ(RenderUser(**source), "plain hi");

  Write("tokenizer_config.json", R"({"chat_template": [{"name": "tool_use", "template": "t"}]})");
  source = LoadModelChatTemplate(dir_);
  EXPECT_THAT(source.status().message(), HasSubstr("none is named 'default'"));
}

TEST_F(ChatTemplateFilesTest, JinjaFileTakesPrecedence) {
  Write("tokenizer_config.json", R"({"eos_token": "</s>", "chat_template": "from config"})");
  Write("chat_template.jinja", "from file {{ eos_token }}\n");
  absl::StatusOr<std::optional<ChatTemplateSource>> source = LoadModelChatTemplate(dir_);
  ASSERT_TRUE(source.ok()) << source.status();
  ASSERT_TRUE(source->has_value());
  EXPECT_THAT((*source)->origin, HasSubstr("chat_template.jinja"));
  EXPECT_EQ(RenderUser(**source), "from file </s>");  // one trailing newline dropped
}

TEST_F(ChatTemplateFilesTest, OverrideKeepsTheModelsSpecialTokens) {
  Write("tokenizer_config.json", R"({"bos_token": "<B>"})");
  Write("override.jinja", "{{ bos_token }}{{ messages | length }}");
  absl::StatusOr<ChatTemplateSource> source = LoadModelSpecialTokens(dir_);
  ASSERT_TRUE(source.ok()) << source.status();
  absl::StatusOr<std::string> text = ReadChatTemplateFile(dir_ / "override.jinja");
  ASSERT_TRUE(text.ok()) << text.status();
  source->source = *text;
  EXPECT_EQ(RenderUser(*source), "<B>1");
  EXPECT_THAT(ReadChatTemplateFile(dir_ / "absent.jinja").status().message(),
              HasSubstr("absent.jinja"));
  // A model without tokenizer_config.json gives no special tokens, which is not an error.
  fs::remove(dir_ / "tokenizer_config.json");
  source = LoadModelSpecialTokens(dir_);
  ASSERT_TRUE(source.ok()) << source.status();
  EXPECT_FALSE(source->bos_token.has_value());
}

TEST_F(ChatTemplateFilesTest, MalformedConfigsNameFileAndField) {
  Write("tokenizer_config.json", R"({"chat_template": 5})");
  EXPECT_THAT(LoadModelChatTemplate(dir_).status().message(),
              HasSubstr("tokenizer_config.json: field 'chat_template' must be a string"));
  Write("tokenizer_config.json", R"({"bos_token": 3, "chat_template": "x"})");
  EXPECT_THAT(LoadModelChatTemplate(dir_).status().message(), HasSubstr("field 'bos_token'"));
  Write("tokenizer_config.json", R"({"chat_template": "x", "chat_template": "y"})");
  EXPECT_THAT(LoadModelChatTemplate(dir_).status().message(), HasSubstr("chat_template"));
  Write("tokenizer_config.json", "{not json");
  EXPECT_THAT(LoadModelChatTemplate(dir_).status().message(), HasSubstr("tokenizer_config.json"));
  Write("tokenizer_config.json", R"({"chat_template": "{% if %}"})");
  absl::StatusOr<std::optional<ChatTemplateSource>> source = LoadModelChatTemplate(dir_);
  ASSERT_TRUE(source.ok()) << source.status();
  absl::StatusOr<ChatTemplate> chat = ChatTemplate::Create(**source);
  EXPECT_THAT(chat.status().message(), HasSubstr("tokenizer_config.json (chat_template): "
                                                 "template syntax error at line 1, column 7"));
}

}  // namespace
}  // namespace flatfleet::chat_template
