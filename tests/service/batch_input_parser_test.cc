#include "coordinator/batch_input_parser.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace flatfleet::coordinator {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

// The single error of a one-line input.
LineError OnlyError(std::string_view line, const BatchInputLimits& limits = {}) {
  ParsedBatch parsed = ParseBatchInput(line, limits);
  EXPECT_EQ(parsed.error_count, 1u) << line;
  EXPECT_TRUE(parsed.requests.empty()) << line;
  return parsed.errors.empty() ? LineError{} : parsed.errors[0];
}

TEST(BatchInputParserTest, ParsesCompletionAndChatLines) {
  const ParsedBatch parsed = ParseBatchInput(
      R"({"custom_id": "r1", "method": "POST", "url": "/v1/completions", "body": {"prompt": "Hello", "max_tokens": 16, "temperature": 0.5, "top_p": 0.9, "top_k": 40, "seed": 7, "stop": "\n"}})"
      "\n"
      R"({"custom_id": "r2", "url": "/v1/chat/completions", "body": {"model": "m", "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": [{"type": "text", "text": "Hi "}, {"type": "text", "text": "there"}]}], "max_completion_tokens": 8, "stop": ["a", "b"]}})"
      "\n");
  ASSERT_TRUE(parsed.ok()) << parsed.errors[0].message;
  ASSERT_EQ(parsed.requests.size(), 2u);
  EXPECT_EQ(parsed.lines_read, 2);

  const BatchRequestLine& completion = parsed.requests[0];
  EXPECT_EQ(completion.line_number, 1);
  EXPECT_EQ(completion.custom_id, "r1");
  EXPECT_EQ(completion.endpoint, Endpoint::kCompletions);
  EXPECT_EQ(completion.prompt, "Hello");
  EXPECT_EQ(completion.sampling.max_tokens, 16u);
  EXPECT_FLOAT_EQ(*completion.sampling.temperature, 0.5f);
  EXPECT_FLOAT_EQ(*completion.sampling.top_p, 0.9f);
  EXPECT_EQ(*completion.sampling.top_k, 40u);
  EXPECT_EQ(*completion.sampling.seed, 7u);
  EXPECT_THAT(completion.sampling.stop, ElementsAre("\n"));
  EXPECT_THAT(completion.body_json, HasSubstr("\"prompt\":\"Hello\""));

  const BatchRequestLine& chat = parsed.requests[1];
  EXPECT_EQ(chat.line_number, 2);
  EXPECT_EQ(chat.endpoint, Endpoint::kChatCompletions);
  ASSERT_EQ(chat.messages.size(), 2u);
  EXPECT_EQ(chat.messages[0].role, "system");
  EXPECT_EQ(chat.messages[1].content, "Hi there");
  EXPECT_EQ(chat.sampling.max_tokens, 8u);
  EXPECT_FALSE(chat.sampling.temperature.has_value());
  EXPECT_THAT(chat.sampling.stop, ElementsAre("a", "b"));
}

TEST(BatchInputParserTest, MethodAndUrlMayBeAbsent) {
  const ParsedBatch parsed = ParseBatchInput(
      "{\"custom_id\": \"p\", \"body\": {\"prompt\": \"x\"}}\n"
      "{\"custom_id\": \"m\", \"body\": {\"messages\": [{\"role\": \"user\", \"content\": "
      "\"x\"}]}}");
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(parsed.requests[0].endpoint, Endpoint::kCompletions);
  EXPECT_EQ(parsed.requests[1].endpoint, Endpoint::kChatCompletions);
  EXPECT_EQ(parsed.requests[0].sampling.max_tokens, BatchInputLimits{}.default_max_tokens);
}

TEST(BatchInputParserTest, BadLinesAreReportedWithLineNumbersAndParsingContinues) {
  const ParsedBatch parsed = ParseBatchInput(
      "{\"custom_id\": \"a\", \"body\": {\"prompt\": \"x\"}}\n"
      "\n"                                                       // 2: blank, skipped
      "{\"custom_id\": \"a\", \"body\": {\"prompt\": \"y\"}}\n"  // 3: duplicate id
      "not json\n"                                               // 4
      "{\"custom_id\": \"b\", \"body\": {\"prompt\": \"y\", \"max_tokens\": 0}}\n"  // 5
      "{\"custom_id\": \"c\", \"body\": {\"prompt\": \"z\"}}\r\n");                 // 6: fine, CRLF
  EXPECT_EQ(parsed.lines_read, 6);
  ASSERT_EQ(parsed.requests.size(), 2u);
  EXPECT_EQ(parsed.requests[1].custom_id, "c");
  EXPECT_EQ(parsed.requests[1].line_number, 6);
  ASSERT_EQ(parsed.error_count, 3u);
  EXPECT_EQ(parsed.errors[0].line_number, 3);
  EXPECT_EQ(parsed.errors[0].field, "custom_id");
  EXPECT_THAT(parsed.errors[0].message, HasSubstr("repeats the custom_id of line 1"));
  EXPECT_EQ(parsed.errors[1].line_number, 4);
  EXPECT_THAT(parsed.errors[1].message, HasSubstr("malformed JSON"));
  EXPECT_EQ(parsed.errors[2].line_number, 5);
  EXPECT_EQ(parsed.errors[2].field, "body.max_tokens");
}

TEST(BatchInputParserTest, TypesAreStrict) {
  EXPECT_EQ(OnlyError(R"({"custom_id": 5, "body": {"prompt": "x"}})").field, "custom_id");
  EXPECT_THAT(OnlyError(R"({"custom_id": 5, "body": {"prompt": "x"}})").message,
              HasSubstr("must be a string, got integer"));
  EXPECT_EQ(OnlyError(R"({"custom_id": "a", "body": {"prompt": "x", "max_tokens": 8.0}})").field,
            "body.max_tokens");
  EXPECT_EQ(OnlyError(R"({"custom_id": "a", "body": {"prompt": "x", "max_tokens": "8"}})").field,
            "body.max_tokens");
  EXPECT_EQ(OnlyError(R"({"custom_id": "a", "body": {"prompt": "x", "temperature": "1"}})").field,
            "body.temperature");
  EXPECT_EQ(OnlyError(R"({"custom_id": "a", "body": {"prompt": ["x"]}})").field, "body.prompt");
  EXPECT_EQ(OnlyError(R"({"custom_id": "a", "body": {"prompt": "x", "stop": [1]}})").field,
            "body.stop[0]");
  EXPECT_EQ(OnlyError(R"({"custom_id": "a", "body": "x"})").field, "body");
  EXPECT_EQ(OnlyError(R"({"custom_id": "a", "method": "GET", "body": {"prompt": "x"}})").field,
            "method");
  EXPECT_EQ(OnlyError(R"(["custom_id"])").field, "");
}

TEST(BatchInputParserTest, RangesAreChecked) {
  EXPECT_EQ(OnlyError(R"({"custom_id": "a", "body": {"prompt": "x", "temperature": 2.5}})").field,
            "body.temperature");
  EXPECT_EQ(OnlyError(R"({"custom_id": "a", "body": {"prompt": "x", "temperature": -0.1}})").field,
            "body.temperature");
  EXPECT_EQ(OnlyError(R"({"custom_id": "a", "body": {"prompt": "x", "top_p": 0}})").field,
            "body.top_p");
  EXPECT_EQ(OnlyError(R"({"custom_id": "a", "body": {"prompt": "x", "top_k": -2}})").field,
            "body.top_k");
  EXPECT_EQ(OnlyError(R"({"custom_id": "a", "body": {"prompt": "x", "seed": -1}})").field,
            "body.seed");
  EXPECT_EQ(OnlyError(R"({"custom_id": "a", "body": {"prompt": "x", "n": 129}})").field, "body.n");
  EXPECT_EQ(OnlyError(R"({"custom_id": "a", "body": {"prompt": "x", "stream": true}})").field,
            "body.stream");
  BatchInputLimits limits;
  limits.max_tokens_cap = 100;
  EXPECT_THAT(OnlyError(R"({"custom_id": "a", "body": {"prompt": "x", "max_tokens": 101}})", limits)
                  .message,
              HasSubstr("must be in [1, 100]"));
  // Bounds themselves are accepted; null means "default".
  const ParsedBatch ok = ParseBatchInput(
      R"({"custom_id": "a", "body": {"prompt": "x", "max_tokens": 100, "temperature": 0, "top_p": 1, "top_k": -1, "seed": 18446744073709551615, "stop": null}})",
      limits);
  ASSERT_TRUE(ok.ok()) << ok.errors[0].field << ": " << ok.errors[0].message;
  EXPECT_EQ(*ok.requests[0].sampling.top_k, 0u);
  EXPECT_EQ(*ok.requests[0].sampling.seed, 18446744073709551615u);
  EXPECT_TRUE(ok.requests[0].sampling.stop.empty());
}

TEST(BatchInputParserTest, UnknownFieldsAreRejected) {
  EXPECT_EQ(OnlyError(R"({"custom_id": "a", "body": {"prompt": "x", "temprature": 1}})").field,
            "body.temprature");
  EXPECT_EQ(OnlyError(R"({"custom_id": "a", "extra": 1, "body": {"prompt": "x"}})").field, "extra");
  EXPECT_THAT(
      OnlyError(
          R"({"custom_id": "a", "url": "/v1/completions", "body": {"prompt": "x", "messages": []}})")
          .message,
      HasSubstr("not accepted by /v1/completions"));
  EXPECT_EQ(
      OnlyError(
          R"({"custom_id": "a", "body": {"messages": [{"role": "user", "content": "x", "tool_calls": []}]}})")
          .field,
      "body.messages[0].tool_calls");
}

TEST(BatchInputParserTest, StructureErrorsNameTheField) {
  EXPECT_EQ(OnlyError(R"({"body": {"prompt": "x"}})").field, "custom_id");
  EXPECT_EQ(OnlyError(R"({"custom_id": "", "body": {"prompt": "x"}})").field, "custom_id");
  EXPECT_EQ(OnlyError(R"({"custom_id": "a"})").field, "body");
  EXPECT_EQ(OnlyError(R"({"custom_id": "a", "body": {}})").field, "body");
  EXPECT_EQ(OnlyError(R"({"custom_id": "a", "body": {"prompt": "x", "messages": []}})").field,
            "body");
  EXPECT_EQ(
      OnlyError(R"({"custom_id": "a", "url": "/v1/embeddings", "body": {"input": "x"}})").field,
      "url");
  EXPECT_EQ(
      OnlyError(R"({"custom_id": "a", "url": "/v1/chat/completions", "body": {"prompt": "x"}})")
          .field,
      "body.prompt");
  EXPECT_EQ(OnlyError(R"({"custom_id": "a", "body": {"messages": []}})").field, "body.messages");
  EXPECT_EQ(
      OnlyError(R"({"custom_id": "a", "body": {"messages": [{"role": "robot", "content": "x"}]}})")
          .field,
      "body.messages[0].role");
  EXPECT_EQ(
      OnlyError(
          R"({"custom_id": "a", "body": {"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}})")
          .field,
      "body.messages[0].content[0].type");
  EXPECT_THAT(OnlyError(R"({"custom_id": "a", "custom_id": "b", "body": {"prompt": "x"}})").message,
              HasSubstr("duplicate JSON key 'custom_id'"));
  EXPECT_EQ(
      OnlyError(
          R"({"custom_id": "a", "body": {"prompt": "x", "max_tokens": 5, "max_completion_tokens": 5}})")
          .field,
      "body.max_completion_tokens");
}

TEST(BatchInputParserTest, LimitsAreEnforced) {
  BatchInputLimits limits;
  limits.max_line_bytes = 70;
  limits.max_stop_sequences = 1;
  limits.max_custom_id_bytes = 3;
  limits.expected_model = "tiny";
  EXPECT_THAT(
      OnlyError(
          R"({"custom_id": "a", "body": {"prompt": "a rather long prompt that is too long"}})",
          limits)
          .message,
      HasSubstr("at most 70 are allowed"));
  EXPECT_EQ(
      OnlyError(R"({"custom_id": "a", "body": {"prompt": "x", "stop": ["a", "b"]}})", limits).field,
      "body.stop");
  EXPECT_EQ(OnlyError(R"({"custom_id": "abcd", "body": {"prompt": "x"}})", limits).field,
            "custom_id");
  EXPECT_EQ(
      OnlyError(R"({"custom_id": "a", "body": {"prompt": "x", "model": "big"}})", limits).field,
      "body.model");
}

TEST(BatchInputParserTest, TooManyLinesIsOneError) {
  BatchInputLimits limits;
  limits.max_lines = 2;
  std::string text;
  for (int i = 0; i < 5; ++i) {
    text += "{\"custom_id\": \"r" + std::to_string(i) + "\", \"body\": {\"prompt\": \"x\"}}\n";
  }
  const ParsedBatch parsed = ParseBatchInput(text, limits);
  EXPECT_EQ(parsed.requests.size(), 2u);
  ASSERT_EQ(parsed.error_count, 1u);
  EXPECT_EQ(parsed.errors[0].line_number, 3);
  EXPECT_THAT(parsed.errors[0].message, HasSubstr("more than 2 request lines"));
}

TEST(BatchInputParserTest, ReportedErrorsAreCappedButCounted) {
  BatchInputLimits limits;
  limits.max_reported_errors = 2;
  const ParsedBatch parsed = ParseBatchInput("x\ny\nz\nw\n", limits);
  EXPECT_EQ(parsed.error_count, 4u);
  EXPECT_EQ(parsed.errors.size(), 2u);
}

TEST(BatchInputParserTest, InvalidUtf8IsAnErrorNotACrash) {
  const LineError error = OnlyError("{\"custom_id\": \"a\", \"body\": {\"prompt\": \"\xff\"}}");
  EXPECT_EQ(error.line_number, 1);
  EXPECT_THAT(error.message, HasSubstr("malformed JSON"));
}

TEST(BatchInputParserTest, DeeplyNestedLineIsAnErrorNotAStackOverflow) {
  const int depth = 400'000;  // Fits the default 1 MiB line limit.
  const std::string line =
      "{\"custom_id\": \"a\", \"body\": {\"prompt\": " + std::string(depth, '[') +
      std::string(depth, ']') + "}}";
  EXPECT_EQ(OnlyError(line).field, "body.prompt");
}

TEST(BatchInputParserTest, IncrementalLinesMatchWholeText) {
  BatchInputParser parser;
  parser.AddLine(R"({"custom_id": "a", "body": {"prompt": "x"}})");
  parser.AddLine("");
  parser.AddLine(R"({"custom_id": "a", "body": {"prompt": "x"}})");
  const ParsedBatch parsed = std::move(parser).Finish();
  EXPECT_EQ(parsed.requests.size(), 1u);
  ASSERT_EQ(parsed.errors.size(), 1u);
  EXPECT_EQ(parsed.errors[0].line_number, 3);
}

TEST(BatchInputParserTest, EveryInvalidLineIsKeptWithItsUsableCustomId) {
  BatchInputLimits limits;
  limits.max_reported_errors = 1;  // Caps the report, not the kept lines.
  const ParsedBatch parsed = ParseBatchInput(
      "{\"custom_id\": \"a\", \"body\": {\"prompt\": \"x\", \"top_p\": 7}}\n"
      "{\"custom_id\": 5, \"body\": {\"prompt\": \"x\"}}\n"
      "{\"custom_id\": \"a\", \"body\": {\"prompt\": \"x\"}}\n"
      "{\"custom_id\": \"b\", \"body\": {\"prompt\": \"x\"}}\n",
      limits);
  EXPECT_EQ(parsed.errors.size(), 1u);
  EXPECT_FALSE(parsed.too_many_lines);
  ASSERT_EQ(parsed.requests.size(), 1u);
  ASSERT_EQ(parsed.invalid_lines.size(), 3u);
  EXPECT_EQ(parsed.invalid_lines[0].custom_id, std::optional<std::string>("a"));
  EXPECT_EQ(parsed.invalid_lines[1].custom_id, std::nullopt);  // Not a string.
  EXPECT_EQ(parsed.invalid_lines[2].custom_id, std::nullopt);  // Line 1 owns "a".
  EXPECT_EQ(DescribeLineError(parsed.invalid_lines[0]).rfind("line 1: body.top_p: ", 0), 0u);
  EXPECT_EQ(DescribeLineError(parsed.invalid_lines[2]),
            "line 3: custom_id: \"a\" repeats the custom_id of line 1");
}

TEST(BatchInputParserTest, ErrorsQuotingLongInputAreBounded) {
  // A repeated key and an unknown field, each 100000 bytes of 2-byte UTF-8 characters.
  std::string key;
  for (int i = 0; i < 50'000; ++i) key += "\xc3\xa9";
  const ParsedBatch parsed =
      ParseBatchInput("{\"" + key + "\": 1, \"" + key + "\": 2}\n" + "{\"custom_id\": \"a\", \"" +
                      key + "\": 1, \"body\": {\"prompt\": \"x\"}}\n");
  ASSERT_EQ(parsed.invalid_lines.size(), 2u);
  const std::string& duplicate = parsed.invalid_lines[0].message;
  EXPECT_THAT(duplicate, HasSubstr("duplicate JSON key"));
  EXPECT_LE(duplicate.size(), 515u);
  EXPECT_EQ(duplicate.substr(duplicate.size() - 5), "\xc3\xa9...");  // No half character.
  const std::string& unknown = parsed.invalid_lines[1].field;
  EXPECT_LE(unknown.size(), 515u);
  EXPECT_EQ(unknown.substr(unknown.size() - 5), "\xc3\xa9...");
  EXPECT_EQ(parsed.invalid_lines[1].message, "unknown field");
}

TEST(BatchInputParserTest, TooManyLinesIsAnUploadErrorNotALineError) {
  BatchInputLimits limits;
  limits.max_lines = 2;
  std::string text;
  for (int i = 0; i < 4; ++i) {
    absl::StrAppend(&text, "{\"custom_id\": \"r", i, "\", \"body\": {\"prompt\": \"x\"}}\n");
  }
  const ParsedBatch parsed = ParseBatchInput(text, limits);
  EXPECT_TRUE(parsed.too_many_lines);
  EXPECT_TRUE(parsed.invalid_lines.empty());
  ASSERT_EQ(parsed.errors.size(), 1u);
  EXPECT_EQ(parsed.errors[0].line_number, 3);
  EXPECT_EQ(DescribeLineError(parsed.errors[0]), "line 3: the batch has more than 2 request lines");
}

}  // namespace
}  // namespace flatfleet::coordinator
