// How a worker turns a request body into text to tokenize: prompts as they are (with the
// tokenizer's BOS), chats through the model's chat template (which holds the BOS itself), and
// which template LoadShard picks (--chat-template's text, the model's own, or none).
#include <filesystem>
#include <fstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "worker/serving/model_loader.h"
#include "worker/serving/shard_chat_template.h"
#include "worker/serving/work_conversion.h"

namespace flatfleet::engine {
namespace {

namespace fs = std::filesystem;
using testing::HasSubstr;

v1::RequestBody Chat(std::initializer_list<std::pair<const char*, const char*>> messages) {
  v1::RequestBody body;
  for (const auto& [role, content] : messages) {
    v1::ChatMessage* message = body.mutable_messages()->add_messages();
    message->set_role(role);
    message->set_content(content);
  }
  return body;
}

ChatRendering WithTemplate(const std::string& source) {
  chat_template::ChatTemplateSource chat_source;
  chat_source.source = source;
  chat_source.bos_token = "<s>";
  absl::StatusOr<chat_template::ChatTemplate> parsed =
      chat_template::ChatTemplate::Create(chat_source);
  EXPECT_TRUE(parsed.ok()) << parsed.status();
  return ChatRendering{std::make_shared<const chat_template::ChatTemplate>(*std::move(parsed)),
                       absl::OkStatus()};
}

TEST(RenderPromptTest, PromptsKeepTheTokenizersSpecialTokens) {
  v1::RequestBody body;
  body.set_prompt("Once upon");
  absl::StatusOr<PromptInput> input = RenderPrompt(body, ChatRendering{});
  ASSERT_TRUE(input.ok()) << input.status();
  EXPECT_EQ(input->text, "Once upon");
  EXPECT_TRUE(input->add_special_tokens);
}

TEST(RenderPromptTest, ChatsRenderWithTheTemplateAndAGenerationPrompt) {
  ChatRendering chat = WithTemplate(
      "{{ bos_token }}{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}"
      "{% if add_generation_prompt %}<assistant>{% endif %}");
  absl::StatusOr<PromptInput> input =
      RenderPrompt(Chat({{"developer", "Be brief."}, {"user", "Hi"}}), chat);
  ASSERT_TRUE(input.ok()) << input.status();
  // OpenAI's developer role reaches templates as the system role they know.
  EXPECT_EQ(input->text, "<s><system>Be brief.<user>Hi<assistant>");
  EXPECT_FALSE(input->add_special_tokens);
}

TEST(RenderPromptTest, ChatWithoutTemplateIsRefusedWithTheReason) {
  ChatRendering none{nullptr, absl::FailedPreconditionError("model 'm' has no chat template")};
  absl::StatusOr<PromptInput> input = RenderPrompt(Chat({{"user", "Hi"}}), none);
  EXPECT_EQ(input.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(input.status().message(), "model 'm' has no chat template");
}

TEST(RenderPromptTest, TemplateThatRaisesGivesItsMessage) {
  ChatRendering chat = WithTemplate(
      "{% if messages[0].role != 'user' %}{{ raise_exception('first message must be from the "
      "user') }}{% endif %}ok");
  absl::StatusOr<PromptInput> input = RenderPrompt(Chat({{"assistant", "Hi"}}), chat);
  EXPECT_EQ(input.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(input.status().message(),
            "the chat template failed: first message must be from the user");
}

class ShardChatTemplateTest : public testing::Test {
 protected:
  void SetUp() override {
    dir_ =
        fs::temp_directory_path() / ("shard_chat_template_" + std::to_string(::getpid()) + "_" +
                                     testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    request_.set_model_path(dir_.string());
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string Render(const v1::LoadShardRequest& request) {
    absl::StatusOr<std::shared_ptr<const chat_template::ChatTemplate>> chat =
        LoadShardChatTemplate(request);
    EXPECT_TRUE(chat.ok()) << chat.status();
    if (!chat.ok() || *chat == nullptr) return "<none>";
    absl::StatusOr<PromptInput> input =
        RenderPrompt(Chat({{"user", "Hi"}}), ChatRendering{*chat, absl::OkStatus()});
    EXPECT_TRUE(input.ok()) << input.status();
    return input.ok() ? input->text : "";
  }

  fs::path dir_;
  v1::LoadShardRequest request_;
};

TEST_F(ShardChatTemplateTest, PicksOverrideThenModelThenNone) {
  EXPECT_EQ(Render(request_), "<none>");  // no tokenizer_config.json at all
  std::ofstream(dir_ / "tokenizer_config.json")
      << R"({"bos_token": "<B>", "chat_template": "own {{ bos_token }}{{ messages[0].content }}"})";
  EXPECT_EQ(Render(request_), "own <B>Hi");
  request_.set_chat_template("given {{ bos_token }}{{ messages | length }}");
  EXPECT_EQ(Render(request_), "given <B>1");

  v1::LoadShardRequest demo;
  demo.set_model_path(std::string(kBuiltinDemoModel));
  EXPECT_EQ(Render(demo), "<none>");
  demo.set_chat_template("demo [{{ bos_token }}]");
  EXPECT_EQ(Render(demo), "demo []");
}

TEST_F(ShardChatTemplateTest, TemplateThatDoesNotParseNamesItsOrigin) {
  request_.set_chat_template("{% for %}");
  EXPECT_THAT(LoadShardChatTemplate(request_).status().message(),
              HasSubstr("--chat-template: template syntax error at line 1, column 8"));
}

}  // namespace
}  // namespace flatfleet::engine
