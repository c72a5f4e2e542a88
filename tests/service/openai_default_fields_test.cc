// Lines written for OpenAI's Batch API spell out fields flatfleet does not implement at their
// defaults: those are accepted and ignored; a value that would change the result fails the
// line with an error naming the field.
#include <string>

#include "absl/strings/str_cat.h"
#include "coordinator/batch_input_parser.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace flatfleet::coordinator {
namespace {

using ::testing::HasSubstr;

std::string ChatLine(const std::string& extra_fields) {
  return absl::StrCat(
      R"({"custom_id": "c", "method": "POST", "url": "/v1/chat/completions", "body": {"model": )"
      R"("m", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 8, )",
      extra_fields, "}}");
}

std::string CompletionLine(const std::string& extra_fields) {
  return absl::StrCat(R"({"custom_id": "p", "url": "/v1/completions", "body": {"prompt": "Hi", )",
                      extra_fields, "}}");
}

void ExpectAccepted(const std::string& line) {
  const ParsedBatch parsed = ParseBatchInput(line);
  EXPECT_EQ(parsed.error_count, 0u)
      << line << ": " << (parsed.errors.empty() ? "" : parsed.errors[0].message);
  EXPECT_EQ(parsed.requests.size(), 1u) << line;
}

LineError OnlyError(const std::string& line) {
  const ParsedBatch parsed = ParseBatchInput(line);
  EXPECT_EQ(parsed.error_count, 1u) << line;
  EXPECT_TRUE(parsed.requests.empty()) << line;
  return parsed.errors.empty() ? LineError{} : parsed.errors[0];
}

TEST(OpenAiDefaultFieldsTest, ChatLineWithEveryDefaultRuns) {
  // As OpenAI's documentation and SDKs write them out.
  ExpectAccepted(ChatLine(
      R"("frequency_penalty": 0, "presence_penalty": 0.0, "logprobs": false, "top_logprobs": 0, )"
      R"("n": 1, "stream": false, "stream_options": null, "logit_bias": {}, "tools": [], )"
      R"("tool_choice": "none", "parallel_tool_calls": true, "response_format": {"type": "text"}, )"
      R"("modalities": ["text"], "audio": null, "store": false, "metadata": {"run": "7"}, )"
      R"("service_tier": "auto", "user": "u1", "seed": 3, "temperature": 1, "top_p": 1, )"
      R"("reasoning_effort": null, "safety_identifier": "s", "prompt_cache_key": "k")"));
}

TEST(OpenAiDefaultFieldsTest, CompletionLineWithEveryDefaultRuns) {
  ExpectAccepted(CompletionLine(
      R"("best_of": 1, "echo": false, "logprobs": null, "suffix": null, "frequency_penalty": 0, )"
      R"("presence_penalty": 0, "logit_bias": null, "n": 1, "stream": false, "user": "u")"));
}

TEST(OpenAiDefaultFieldsTest, ValuesThatWouldChangeTheResultFailTheLine) {
  struct Case {
    std::string line;
    std::string field;
    std::string message;
  };
  const Case cases[] = {
      {ChatLine(R"("stream": true)"), "body.stream", "streaming is not supported in batches"},
      {CompletionLine(R"("best_of": 2, "n": 2)"), "body.best_of", "best_of > 1 is not supported"},
      {ChatLine(R"("tools": [{"type": "function", "function": {"name": "f"}}])"), "body.tools",
       "tools (function calling) are not supported"},
      {ChatLine(R"("tool_choice": "auto")"), "body.tool_choice", "needs tools"},
      {ChatLine(R"("response_format": {"type": "json_object"})"), "body.response_format",
       "only text responses"},
      {ChatLine(R"("logit_bias": {"50256": -100})"), "body.logit_bias", "only {}"},
      {ChatLine(R"("stream_options": {"include_usage": true})"), "body.stream_options",
       "need streaming"},
      {ChatLine(R"("store": true)"), "body.store", "stored completions are not supported"},
      {ChatLine(R"("metadata": {"n": 1})"), "body.metadata", "must be an object of strings"},
      {ChatLine(R"("parallel_tool_calls": "yes")"), "body.parallel_tool_calls", "a boolean"},
      {CompletionLine(R"("best_of": 3)"), "body.best_of", "best_of > 1 is not supported"},
      {CompletionLine(R"("echo": true)"), "body.echo", "echoing the prompt"},
      {CompletionLine(R"("suffix": "end")"), "body.suffix", "suffixes"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.line);
    const LineError error = OnlyError(c.line);
    EXPECT_EQ(error.field, c.field);
    EXPECT_THAT(error.message, HasSubstr(c.message));
  }
}

TEST(OpenAiDefaultFieldsTest, FieldsOfTheOtherEndpointAndTyposStillFail) {
  EXPECT_EQ(OnlyError(CompletionLine(R"("tools": [])")).message, "not accepted by /v1/completions");
  EXPECT_EQ(OnlyError(ChatLine(R"("echo": false)")).message,
            "not accepted by /v1/chat/completions");
  EXPECT_EQ(OnlyError(ChatLine(R"("frequency_penalti": 0)")).message, "unknown field");
}

}  // namespace
}  // namespace flatfleet::coordinator
