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
