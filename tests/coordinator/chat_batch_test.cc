// Chat batches end to end through real processes of the `flatfleet` binary on stories260K
// (../shared/models/stories260K, which has no chat template of its own): with
// `serve coordinator --chat-template FILE` chat lines are rendered with it (the same greedy
// output and prompt length as a completion of the rendered text), a line whose conversation
// makes the template raise fails with the template's message; every real template of the
// chat-template fixtures runs the same way; without the flag chat lines fail with a clear error
// while completions still run.
#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "coordinator/server/batch_client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/coordinator/child_process.h"

namespace flatfleet::coordinator {
namespace {

using testing::HasSubstr;
using testing_util::ChildProcess;
using testing_util::MakeTempDir;

constexpr absl::Duration kStartTimeout = absl::Seconds(120);
constexpr absl::Duration kJobTimeout = absl::Seconds(300);

// A Llama-2-style template written for this test: BOS, [INST] turns, alternation enforced.
constexpr char kTemplate[] =
    "{{ bos_token }}{% for message in messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{% endif %}"
    "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] | trim + ' [/INST]' }}"
    "{% else %}{{ ' ' + message['content'] | trim + ' ' + eos_token }}{% endif %}"
    "{% endfor %}\n";

std::string ModelDir() {
  const char* shared = std::getenv("FLATFLEET_SHARED_DIR");
  return std::string(shared != nullptr ? shared : FLATFLEET_SHARED_DIR) + "/models/stories260K";
}

class ChatDeployment {
 public:
  // One worker and a coordinator serving stories260K as "stories" (with `extra` flags).
  explicit ChatDeployment(const std::string& name, const std::vector<std::string>& extra)
      : dir_(MakeTempDir(name)) {
    auto worker = ChildProcess::Spawn(
        {FLATFLEET_BINARY, "serve", "worker", "--listen", "127.0.0.1:0", "--device", "cpu"},
        {.log_path = log()});
    EXPECT_TRUE(worker.ok()) << worker.status();
    if (!worker.ok()) return;
    worker_ = *std::move(worker);
    auto worker_address = worker_->WaitForLine("listening on ", kStartTimeout);
    EXPECT_TRUE(worker_address.ok()) << worker_address.status() << "; see " << log();
    if (!worker_address.ok()) return;
    std::vector<std::string> argv = {
        FLATFLEET_BINARY,  "serve",   "coordinator",           "--listen", "127.0.0.1:0",  "--db",
        dir_ + "/jobs.db", "--model", "stories=" + ModelDir(), "--worker", *worker_address};
    argv.insert(argv.end(), extra.begin(), extra.end());
    auto coordinator = ChildProcess::Spawn(argv, {.log_path = log()});
    EXPECT_TRUE(coordinator.ok()) << coordinator.status();
    if (!coordinator.ok()) return;
    coordinator_ = *std::move(coordinator);
    auto address = coordinator_->WaitForLine("listening on ", kStartTimeout);
    EXPECT_TRUE(address.ok()) << address.status() << "; see " << log();
    if (!address.ok()) return;
    auto client = BatchClient::Connect(*address, absl::Seconds(60));
    EXPECT_TRUE(client.ok()) << client.status();
    if (client.ok()) client_ = *std::move(client);
  }

  const std::string& dir() const { return dir_; }
  std::string log() const { return dir_ + "/processes.log"; }
  BatchClient* client() { return client_.get(); }

  // Submits the lines and waits for the batch to end; results by custom_id.
  std::map<std::string, v1::BatchResult> Run(const std::vector<std::string>& lines) {
    std::map<std::string, v1::BatchResult> by_id;
    v1::BatchOptions options;
    options.set_model("stories");
    absl::StatusOr<v1::CreateBatchResponse> created = client_->Submit(options, lines);
    EXPECT_TRUE(created.ok()) << created.status();
    if (!created.ok()) return by_id;
    EXPECT_EQ(created->errors_size(), 0) << created->ShortDebugString();
    const absl::Time deadline = absl::Now() + kJobTimeout;
    while (absl::Now() < deadline) {
      absl::Status status = client_->StreamResults(created->batch().id(), by_id.size(),
                                                   /*follow=*/true, [&](const v1::BatchResult& r) {
                                                     by_id[r.custom_id()] = r;
                                                     return true;
                                                   });
      if (status.ok()) break;
      absl::SleepFor(absl::Milliseconds(200));
    }
    EXPECT_EQ(by_id.size(), lines.size()) << "see " << log();
    return by_id;
  }

 private:
  std::string dir_;
  std::unique_ptr<ChildProcess> worker_;
  std::unique_ptr<ChildProcess> coordinator_;
  std::unique_ptr<BatchClient> client_;
};

std::string ChatLine(const std::string& id, const std::string& messages_json) {
  return absl::StrCat(R"({"custom_id": ")", id,
                      R"(", "method": "POST", "url": "/v1/chat/completions", "body": {"model": )"
                      R"("stories", "messages": )",
                      messages_json, R"(, "max_tokens": 12, "temperature": 0}})");
}

std::string CompletionLine(const std::string& id, const std::string& prompt) {
  return absl::StrCat(R"({"custom_id": ")", id,
                      R"(", "url": "/v1/completions", "body": {"model": "stories", "prompt": ")",
                      prompt, R"(", "max_tokens": 12, "temperature": 0}})");
}

TEST(ChatBatchTest, ChatTemplateFlagRendersChatLinesOnStories260K) {
  if (!std::filesystem::exists(ModelDir() + "/model.safetensors")) {
    GTEST_SKIP() << "no stories260K at " << ModelDir();
  }
  const std::string dir = MakeTempDir("chat_template_file");
  const std::string template_path = dir + "/llama2-style.jinja";
  std::ofstream(template_path) << kTemplate;
  ChatDeployment deployment("chat_with_template", {"--chat-template", template_path});
  ASSERT_NE(deployment.client(), nullptr) << "see " << deployment.log();

  const std::map<std::string, v1::BatchResult> results = deployment.Run({
      ChatLine("chat-one", R"([{"role": "user", "content": " Once upon a time "}])"),
      // The same prompt as a completion: the template gives "<s>[INST] ... [/INST]"; the
      // completion gets its BOS from the tokenizer instead.
      CompletionLine("completion-one", "[INST] Once upon a time [/INST]"),
      ChatLine("chat-two", R"([{"role": "user", "content": "Lily had a dog."},
          {"role": "assistant", "content": "The dog was big."},
          {"role": "user", "content": "What did Lily do?"}])"),
      CompletionLine("completion-two",
                     "[INST] Lily had a dog. [/INST] The dog was big. </s>[INST] What did Lily do? "
                     "[/INST]"),
      ChatLine("raises", R"([{"role": "assistant", "content": "I speak first."}])"),
  });
  ASSERT_EQ(results.size(), 5u) << "see " << deployment.log();
  for (const auto& [chat, completion] : std::vector<std::pair<std::string, std::string>>{
           {"chat-one", "completion-one"}, {"chat-two", "completion-two"}}) {
    SCOPED_TRACE(chat);
    const v1::BatchResult& chat_result = results.at(chat);
    const v1::BatchResult& completion_result = results.at(completion);
    ASSERT_TRUE(chat_result.has_response()) << chat_result.ShortDebugString();
    ASSERT_TRUE(completion_result.has_response()) << completion_result.ShortDebugString();
    EXPECT_EQ(chat_result.response().usage().prompt_tokens(),
              completion_result.response().usage().prompt_tokens());
    EXPECT_EQ(chat_result.response().text(), completion_result.response().text());
    EXPECT_GT(chat_result.response().usage().completion_tokens(), 0u);
  }
  const v1::BatchResult& raised = results.at("raises");
  ASSERT_TRUE(raised.has_error()) << raised.ShortDebugString();
  EXPECT_EQ(raised.error().message(),
            "the chat template failed: Conversation roles must alternate "
            "user/assistant/user/assistant/...");
}

// Every real template of ../shared/fixtures/chat-templates, given with --chat-template, runs
// chat lines end to end on stories260K: the conversations Jinja2 renders get a response, and
// those whose rendering raises fail with exactly the message Jinja2 gave (expected.json).
TEST(ChatBatchTest, FixtureTemplatesRunEndToEnd) {
  const std::string shared = std::getenv("FLATFLEET_SHARED_DIR") != nullptr
                                 ? std::getenv("FLATFLEET_SHARED_DIR")
                                 : FLATFLEET_SHARED_DIR;
  const std::string fixtures = shared + "/fixtures/chat-templates";
  if (!std::filesystem::exists(ModelDir() + "/model.safetensors") ||
      !std::filesystem::exists(fixtures + "/expected.json")) {
    GTEST_SKIP() << "no stories260K or chat-template fixtures under " << shared;
  }
  auto read_json = [](const std::string& path) {
    std::ifstream in(path);
    std::stringstream text;
    text << in.rdbuf();
    return nlohmann::json::parse(text.str());
  };
  const nlohmann::json templates = read_json(fixtures + "/templates.json");
  const nlohmann::json conversations = read_json(fixtures + "/conversations.json");
  const nlohmann::json expected = read_json(fixtures + "/expected.json");
  const std::vector<std::string> conversation_ids = {"system_user", "multi_turn",
                                                     "consecutive_users"};
  ASSERT_EQ(templates.size(), 10u);
  int responses = 0;
  int raised = 0;
  for (const nlohmann::json& chat_template : templates) {
    const std::string name = chat_template["name"];
    SCOPED_TRACE(name);
    ChatDeployment deployment(
        "chat_fixture",
        {"--chat-template", fixtures + "/" + chat_template["file"].get<std::string>()});
    ASSERT_NE(deployment.client(), nullptr) << "see " << deployment.log();
    std::vector<std::string> lines;
    for (const std::string& id : conversation_ids) {
      for (const nlohmann::json& conversation : conversations) {
        if (conversation["id"] == id)
          lines.push_back(ChatLine(id, conversation["messages"].dump()));
      }
    }
    const std::map<std::string, v1::BatchResult> results = deployment.Run(lines);
    ASSERT_EQ(results.size(), conversation_ids.size()) << "see " << deployment.log();
    for (const nlohmann::json& test_case : expected) {
      if (test_case["template"] != name || !test_case["add_generation_prompt"].get<bool>())
        continue;
      auto result = results.find(test_case["conversation"].get<std::string>());
      if (result == results.end()) continue;
      SCOPED_TRACE(result->first);
      if (test_case.contains("error")) {
        ASSERT_TRUE(result->second.has_error()) << result->second.ShortDebugString();
        EXPECT_EQ(result->second.error().message(),
                  "the chat template failed: " + test_case["error"].get<std::string>());
        ++raised;
      } else {
        ASSERT_TRUE(result->second.has_response()) << result->second.ShortDebugString();
        EXPECT_GT(result->second.response().usage().prompt_tokens(), 8u);
        ++responses;
      }
    }
  }
  EXPECT_EQ(responses, 24);
  EXPECT_EQ(raised, 6);
}

TEST(ChatBatchTest, ModelWithoutTemplateRefusesChatLinesOnly) {
  if (!std::filesystem::exists(ModelDir() + "/model.safetensors")) {
    GTEST_SKIP() << "no stories260K at " << ModelDir();
  }
  ChatDeployment deployment("chat_without_template", {});
  ASSERT_NE(deployment.client(), nullptr) << "see " << deployment.log();
  const std::map<std::string, v1::BatchResult> results = deployment.Run({
      ChatLine("chat", R"([{"role": "user", "content": "Hi"}])"),
      CompletionLine("completion", "Once upon a time"),
  });
  ASSERT_EQ(results.size(), 2u) << "see " << deployment.log();
  ASSERT_TRUE(results.at("chat").has_error()) << results.at("chat").ShortDebugString();
  EXPECT_THAT(results.at("chat").error().message(),
              HasSubstr("has no chat template (no chat_template.jinja, no chat_template in "
                        "tokenizer_config.json)"));
  EXPECT_THAT(results.at("chat").error().message(), HasSubstr("--chat-template FILE"));
  EXPECT_TRUE(results.at("completion").has_response())
      << results.at("completion").ShortDebugString();
}

TEST(ChatBatchTest, TemplateThatDoesNotParseStopsTheCoordinatorAtStart) {
  const std::string dir = MakeTempDir("chat_template_bad");
  const std::string template_path = dir + "/bad.jinja";
  std::ofstream(template_path) << "{% for m in messages %}\n{{ m.content }";
  // It fails before it listens, so no worker needs to exist at the address.
  const std::string command =
      absl::StrCat(FLATFLEET_BINARY, " serve coordinator --listen 127.0.0.1:0 --db ", dir,
                   "/jobs.db --model demo=builtin:demo --worker 127.0.0.1:1 --chat-template ",
                   template_path, " >/dev/null 2>", dir, "/coordinator.log");
  const int status = std::system(command.c_str());
  ASSERT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), 1);
  std::ifstream log(dir + "/coordinator.log");
  std::stringstream text;
  text << log.rdbuf();
  EXPECT_THAT(text.str(), HasSubstr("bad.jinja: template syntax error at line 2"));
}

}  // namespace
}  // namespace flatfleet::coordinator
