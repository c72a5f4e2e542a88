// The sampling fields flatfleet implements (penalties, min_tokens, ignore_eos, stop_token_ids,
// n, logprobs in each endpoint's spelling): read from a batch line into SamplingOptions, carried
// into the worker's proto and back into JSON; out-of-range values fail the line naming the field.
#include "coordinator/openai_sampling_fields.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "coordinator/batch_input_parser.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace flatfleet::coordinator {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::string ChatLine(const std::string& extra_fields) {
  return absl::StrCat(
      R"({"custom_id": "c", "method": "POST", "url": "/v1/chat/completions", "body": {"model": )"
      R"("m", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 8, )",
      extra_fields, "}}");
}

std::string CompletionLine(const std::string& extra_fields) {
  return absl::StrCat(
      R"({"custom_id": "p", "url": "/v1/completions", "body": {"prompt": "Hi", "max_tokens": 8, )",
      extra_fields, "}}");
}

SamplingOptions Accepted(const std::string& line) {
  const ParsedBatch parsed = ParseBatchInput(line);
  EXPECT_EQ(parsed.error_count, 0u)
      << line << ": " << (parsed.errors.empty() ? "" : parsed.errors[0].message);
  EXPECT_EQ(parsed.requests.size(), 1u) << line;
  return parsed.requests.empty() ? SamplingOptions{} : parsed.requests[0].sampling;
}

TEST(OpenAiSamplingFieldsTest, ChatLineCarriesEveryField) {
  const SamplingOptions sampling = Accepted(
      ChatLine(R"("presence_penalty": 0.5, "frequency_penalty": -0.25, "repetition_penalty": 1.2, )"
               R"("min_tokens": 3, "ignore_eos": true, "stop_token_ids": [7, 2], "n": 3, )"
               R"("logprobs": true, "top_logprobs": 4, "seed": 11)"));
  EXPECT_EQ(sampling.presence_penalty, 0.5f);
  EXPECT_EQ(sampling.frequency_penalty, -0.25f);
  EXPECT_EQ(sampling.repetition_penalty, 1.2f);
  EXPECT_EQ(sampling.min_tokens, 3u);
  EXPECT_TRUE(sampling.ignore_eos);
  EXPECT_THAT(sampling.stop_token_ids, ElementsAre(7u, 2u));
  EXPECT_EQ(sampling.n, 3u);
  EXPECT_EQ(sampling.logprobs, 4u);
  EXPECT_EQ(sampling.seed, 11u);
}

TEST(OpenAiSamplingFieldsTest, LogprobsInEachEndpointsSpelling) {
  EXPECT_EQ(Accepted(CompletionLine(R"("logprobs": 2)")).logprobs, 2u);
  EXPECT_EQ(Accepted(CompletionLine(R"("logprobs": 0)")).logprobs, 0u);
  EXPECT_EQ(Accepted(CompletionLine(R"("logprobs": null)")).logprobs, std::nullopt);
  EXPECT_EQ(Accepted(ChatLine(R"("logprobs": true)")).logprobs, 0u);
  EXPECT_EQ(Accepted(ChatLine(R"("logprobs": false, "top_logprobs": null)")).logprobs,
            std::nullopt);
  // Defaults: nothing set, n = 1.
  const SamplingOptions plain = Accepted(ChatLine(R"("n": 1, "frequency_penalty": 0)"));
  EXPECT_EQ(plain.n, 1u);
  EXPECT_EQ(plain.frequency_penalty, 0.0f);
  EXPECT_FALSE(plain.logprobs.has_value());
}

TEST(OpenAiSamplingFieldsTest, BadValuesFailTheLineNamingTheField) {
  struct Case {
    std::string line;
    std::string field;
    std::string message;
  };
  const Case cases[] = {
      {ChatLine(R"("frequency_penalty": 2.5)"), "body.frequency_penalty", "must be in [-2, 2]"},
      {ChatLine(R"("presence_penalty": "1")"), "body.presence_penalty", "must be a number"},
      {ChatLine(R"("repetition_penalty": 0)"), "body.repetition_penalty", "must be in (0, 2]"},
      {ChatLine(R"("min_tokens": 9)"), "body.min_tokens", "at most max_tokens"},
      {ChatLine(R"("min_tokens": -1)"), "body.min_tokens", "must be in [0, 8]"},
      {ChatLine(R"("ignore_eos": 1)"), "body.ignore_eos", "must be a boolean"},
      {ChatLine(R"("stop_token_ids": [1, -2])"), "body.stop_token_ids[1]", "must be in"},
      {ChatLine(R"("stop_token_ids": 5)"), "body.stop_token_ids", "an array of integers"},
      {ChatLine(R"("n": 0)"), "body.n", "must be in [1, 128]"},
      {ChatLine(R"("n": 1.5)"), "body.n", "must be an integer"},
      {ChatLine(R"("top_logprobs": 3)"), "body.top_logprobs", "needs \"logprobs\": true"},
      {ChatLine(R"("logprobs": true, "top_logprobs": 21)"), "body.top_logprobs",
       "must be in [0, 20]"},
      {ChatLine(R"("logprobs": 3)"), "body.logprobs", "must be a boolean"},
      {CompletionLine(R"("logprobs": true)"), "body.logprobs", "must be an integer"},
      {CompletionLine(R"("top_logprobs": 2)"), "body.top_logprobs",
       "not accepted by /v1/completions"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.line);
    const ParsedBatch parsed = ParseBatchInput(c.line);
    ASSERT_EQ(parsed.error_count, 1u);
    EXPECT_EQ(parsed.errors[0].field, c.field);
    EXPECT_THAT(parsed.errors[0].message, HasSubstr(c.message));
  }
}

TEST(OpenAiSamplingFieldsTest, WrittenFieldsReadBackTheSame) {
  for (const Endpoint endpoint : {Endpoint::kCompletions, Endpoint::kChatCompletions}) {
    SCOPED_TRACE(std::string(EndpointUrl(endpoint)));
    SamplingOptions options;
    options.max_tokens = 8;
    options.presence_penalty = 0.5f;
    options.frequency_penalty = 1.0f;
    options.repetition_penalty = 1.5f;
    options.min_tokens = 2;
    options.ignore_eos = true;
    options.stop_token_ids = {5};
    options.n = 4;
    options.logprobs = 3;
    nlohmann::json body = {{"max_tokens", 8}};
    WriteSamplingFields(options, endpoint, body);
    SamplingOptions read;
    read.max_tokens = 8;
    ASSERT_FALSE(ReadSamplingFields(body, endpoint, &read).has_value()) << body.dump();
    EXPECT_EQ(read.presence_penalty, options.presence_penalty);
    EXPECT_EQ(read.frequency_penalty, options.frequency_penalty);
    EXPECT_EQ(read.repetition_penalty, options.repetition_penalty);
    EXPECT_EQ(read.min_tokens, options.min_tokens);
    EXPECT_EQ(read.ignore_eos, options.ignore_eos);
    EXPECT_EQ(read.stop_token_ids, options.stop_token_ids);
    EXPECT_EQ(read.n, options.n);
    EXPECT_EQ(read.logprobs, options.logprobs);
  }
}

}  // namespace
}  // namespace flatfleet::coordinator
