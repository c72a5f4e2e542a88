#include "coordinator/server/work_conversion.h"

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace flatfleet::coordinator {
namespace {

TEST(WorkConversionTest, StoredChatBodyBecomesAWorkerRequestWithDefaults) {
  absl::StatusOr<BatchRequestLine> line = ParseStoredBody(
      R"({"messages":[{"role":"system","content":"Be brief"},{"role":"user","content":"Hi"}],)"
      R"("temperature":0.5,"stop":"\n"})");
  ASSERT_TRUE(line.ok()) << line.status();
  v1::RequestBody body = ToRequestBodyProto(*line);
  ASSERT_EQ(body.messages().messages_size(), 2);
  EXPECT_EQ(body.messages().messages(1).content(), "Hi");
  EXPECT_EQ(body.sampling().max_tokens(), 256u);  // The parser's default.
  EXPECT_FLOAT_EQ(body.sampling().temperature(), 0.5f);
  EXPECT_FALSE(body.sampling().has_top_p());
  ASSERT_EQ(body.sampling().stop_size(), 1);
  EXPECT_EQ(body.sampling().stop(0), "\n");
}

TEST(WorkConversionTest, InvalidStoredBodyIsAnError) {
  EXPECT_FALSE(ParseStoredBody(R"({"prompt":"x","temperature":"hot"})").ok());
  EXPECT_FALSE(ParseStoredBody("not json").ok());
}

TEST(WorkConversionTest, GenerateBodyRoundTripsThroughJson) {
  v1::RequestBody body;
  body.set_prompt("Once");
  body.mutable_sampling()->set_max_tokens(7);
  body.mutable_sampling()->set_seed(42);
  absl::StatusOr<BatchRequestLine> line = ParseStoredBody(RequestBodyToJson(body));
  ASSERT_TRUE(line.ok()) << line.status();
  EXPECT_EQ(line->prompt, "Once");
  EXPECT_EQ(line->sampling.max_tokens, 7u);
  EXPECT_EQ(line->sampling.seed, 42u);
}

TEST(WorkConversionTest, ResponseLineIsOpenAiShapedAndReadsBack) {
  v1::WorkResult result;
  result.set_work_id(3);
  result.mutable_response()->set_text("there");
  result.mutable_response()->add_token_ids(17);
  result.mutable_response()->set_finish_reason(v1::FINISH_REASON_LENGTH);
  result.mutable_response()->mutable_usage()->set_prompt_tokens(2);
  result.mutable_response()->mutable_usage()->set_completion_tokens(1);
  result.mutable_response()->mutable_usage()->set_total_tokens(3);
  ResultRecord record = FormatWorkResult("c1", "demo", Endpoint::kChatCompletions, result);
  EXPECT_EQ(record.outcome, ResultOutcome::kSucceeded);
  nlohmann::json line = nlohmann::json::parse(record.output_line);
  EXPECT_EQ(line["custom_id"], "c1");
  EXPECT_EQ(line["response"]["status_code"], 200);
  EXPECT_EQ(line["response"]["body"]["object"], "chat.completion");
  EXPECT_EQ(line["response"]["body"]["choices"][0]["message"]["content"], "there");
  EXPECT_EQ(line["response"]["body"]["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(line["response"]["body"]["usage"]["total_tokens"], 3);
  EXPECT_TRUE(line["error"].is_null());

  StoredResult stored{5, 1, "c1", record.outcome, record.output_line};
  absl::StatusOr<v1::BatchResult> back = ToBatchResultProto(stored);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->sequence(), 5u);
  EXPECT_EQ(back->custom_id(), "c1");
  EXPECT_EQ(back->response().text(), "there");
  EXPECT_EQ(back->response().finish_reason(), v1::FINISH_REASON_LENGTH);
  ASSERT_EQ(back->response().token_ids_size(), 1);
  EXPECT_EQ(back->response().token_ids(0), 17u);
  EXPECT_EQ(back->response().usage().completion_tokens(), 1u);
}

TEST(WorkConversionTest, WorkerErrorBecomesAnErrorLine) {
  v1::WorkResult result;
  result.mutable_error()->set_code("context_length_exceeded");
  result.mutable_error()->set_message("too long");
  ResultRecord record = FormatWorkResult("c2", "demo", Endpoint::kCompletions, result);
  EXPECT_EQ(record.outcome, ResultOutcome::kFailed);
  absl::StatusOr<v1::BatchResult> back =
      ToBatchResultProto(StoredResult{0, 1, "c2", record.outcome, record.output_line});
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->error().code(), "context_length_exceeded");
  EXPECT_EQ(back->error().message(), "too long");
}

}  // namespace
}  // namespace flatfleet::coordinator

namespace flatfleet::coordinator {
namespace {

TEST(WorkConversionTest, SamplingFieldsReachTheWorkerRequestAndRoundTrip) {
  absl::StatusOr<BatchRequestLine> line = ParseStoredBody(
      R"({"messages":[{"role":"user","content":"Hi"}],"max_tokens":9,"n":2,"logprobs":true,)"
      R"("top_logprobs":3,"presence_penalty":0.5,"frequency_penalty":1,"repetition_penalty":1.1,)"
      R"("min_tokens":2,"ignore_eos":true,"stop_token_ids":[4,5]})");
  ASSERT_TRUE(line.ok()) << line.status();
  const v1::RequestBody body = ToRequestBodyProto(*line);
  const v1::SamplingParams& sampling = body.sampling();
  EXPECT_EQ(sampling.n(), 2u);
  EXPECT_EQ(sampling.logprobs(), 3u);
  EXPECT_FLOAT_EQ(sampling.presence_penalty(), 0.5f);
  EXPECT_FLOAT_EQ(sampling.frequency_penalty(), 1.0f);
  EXPECT_FLOAT_EQ(sampling.repetition_penalty(), 1.1f);
  EXPECT_EQ(sampling.min_tokens(), 2u);
  EXPECT_TRUE(sampling.ignore_eos());
  ASSERT_EQ(sampling.stop_token_ids_size(), 2);
  EXPECT_EQ(sampling.stop_token_ids(1), 5u);
  // Generate's proto body written as JSON reads back to the same request.
  absl::StatusOr<BatchRequestLine> again = ParseStoredBody(RequestBodyToJson(body));
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(ToRequestBodyProto(*again).SerializeAsString(), body.SerializeAsString());
}

v1::WorkResult TwoChoicesWithLogprobs() {
  v1::WorkResult result;
  v1::Response* response = result.mutable_response();
  response->set_text("ab");
  response->mutable_usage()->set_prompt_tokens(4);
  response->mutable_usage()->set_completion_tokens(3);
  response->mutable_usage()->set_total_tokens(7);
  for (int c = 0; c < 2; ++c) {
    v1::Choice* choice = response->add_choices();
    choice->set_index(c);
    choice->set_text(c == 0 ? "ab" : "b");
    choice->set_finish_reason(c == 0 ? v1::FINISH_REASON_LENGTH : v1::FINISH_REASON_STOP);
    for (const char* token :
         c == 0 ? std::vector<const char*>{"a", "b"} : std::vector<const char*>{"b"}) {
      v1::TokenLogprob* entry = choice->add_logprobs();
      entry->set_token(token);
      entry->set_token_id(token[0]);
      entry->set_logprob(-0.5f);
      v1::TokenLogprob* top = entry->add_top_logprobs();
      top->set_token("z");
      top->set_token_id('z');
      top->set_logprob(-0.25f);
    }
  }
  return result;
}

TEST(WorkConversionTest, ChoicesAndCompletionLogprobsInOpenAisShape) {
  const ResultRecord record =
      FormatWorkResult("c", "demo", Endpoint::kCompletions, TwoChoicesWithLogprobs());
  const nlohmann::json body = nlohmann::json::parse(record.output_line)["response"]["body"];
  ASSERT_EQ(body["choices"].size(), 2u);
  EXPECT_EQ(body["choices"][1]["index"], 1);
  EXPECT_EQ(body["choices"][1]["text"], "b");
  EXPECT_EQ(body["choices"][1]["finish_reason"], "stop");
  const nlohmann::json& logprobs = body["choices"][0]["logprobs"];
  EXPECT_EQ(logprobs["tokens"], nlohmann::json::array({"a", "b"}));
  EXPECT_EQ(logprobs["token_logprobs"], nlohmann::json::array({-0.5, -0.5}));
  EXPECT_EQ(logprobs["text_offset"], nlohmann::json::array({0, 1}));
  // The alternatives plus the sampled token.
  EXPECT_EQ(logprobs["top_logprobs"][1], nlohmann::json({{"z", -0.25}, {"b", -0.5}}));
  EXPECT_EQ(body["usage"]["completion_tokens"], 3);
}

TEST(WorkConversionTest, ChatLogprobsInOpenAisShape) {
  const ResultRecord record =
      FormatWorkResult("c", "demo", Endpoint::kChatCompletions, TwoChoicesWithLogprobs());
  const nlohmann::json body = nlohmann::json::parse(record.output_line)["response"]["body"];
  ASSERT_EQ(body["choices"].size(), 2u);
  EXPECT_EQ(body["choices"][1]["message"]["content"], "b");
  const nlohmann::json& content = body["choices"][0]["logprobs"]["content"];
  ASSERT_EQ(content.size(), 2u);
  EXPECT_EQ(content[0]["token"], "a");
  EXPECT_EQ(content[0]["logprob"], -0.5);
  EXPECT_EQ(content[0]["bytes"], nlohmann::json::array({97}));
  ASSERT_EQ(content[0]["top_logprobs"].size(), 1u);
  EXPECT_EQ(content[0]["top_logprobs"][0]["token"], "z");
  EXPECT_EQ(content[0]["top_logprobs"][0]["logprob"], -0.25);
  EXPECT_TRUE(body["choices"][0]["logprobs"]["refusal"].is_null());
}

}  // namespace
}  // namespace flatfleet::coordinator
