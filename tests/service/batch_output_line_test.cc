#include "coordinator/batch_output_line.h"

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace flatfleet::coordinator {
namespace {

TEST(BatchOutputLineTest, ResponseLineHasOpenAiShape) {
  const nlohmann::json body = {{"choices", {{{"text", "hi"}, {"finish_reason", "stop"}}}}};
  EXPECT_EQ(
      FormatResponseLine("r\"1", body),
      R"({"custom_id":"r\"1","response":{"status_code":200,"body":{"choices":[{"finish_reason":"stop","text":"hi"}]}},"error":null})");
}

TEST(BatchOutputLineTest, ErrorLineHasOpenAiShape) {
  EXPECT_EQ(
      FormatErrorLine("r2", "max_attempts_exceeded", "gave up\n"),
      R"({"custom_id":"r2","response":null,"error":{"code":"max_attempts_exceeded","message":"gave up\n"}})");
}

TEST(BatchOutputLineTest, InvalidLineWithoutCustomIdHasNullCustomId) {
  LineError error{9, "body.max_tokens", "must be an integer", std::nullopt};
  EXPECT_EQ(FormatInvalidLine(error),
            "{\"custom_id\":null,\"response\":null,\"error\":{\"code\":\"invalid_request\","
            "\"message\":\"line 9: body.max_tokens: must be an integer\"}}");
  error.custom_id = "q8";
  EXPECT_EQ(nlohmann::json::parse(FormatInvalidLine(error))["custom_id"], "q8");
}

TEST(BatchOutputLineTest, InvalidUtf8IsReplacedNotThrown) {
  const std::string line = FormatErrorLine("r3", "bad_output", "\xff\xfe");
  EXPECT_TRUE(nlohmann::json::accept(line)) << line;
}

}  // namespace
}  // namespace flatfleet::coordinator

namespace flatfleet::coordinator {
namespace {

StoredResult Stored(int64_t line_number, std::string line) {
  StoredResult stored;
  stored.line_number = line_number;
  stored.output_line = std::move(line);
  return stored;
}

TEST(RenderOpenAiLineTest, ResponseGetsOpenAiIds) {
  const nlohmann::json body = {
      {"object", "chat.completion"}, {"created", 7}, {"choices", nlohmann::json::array()}};
  absl::StatusOr<std::string> line =
      RenderOpenAiLine("batch_abc", Stored(4, FormatResponseLine("r1", body)));
  ASSERT_TRUE(line.ok()) << line.status();
  EXPECT_EQ(
      *line,
      R"({"id":"batch_req_abc_4","custom_id":"r1","response":{"status_code":200,"request_id":"req_abc_4","body":{"id":"chatcmpl-abc_4","choices":[],"created":7,"object":"chat.completion"}},"error":null})");
}

TEST(RenderOpenAiLineTest, FailuresBecomeStatusCodesWithAnErrorBody) {
  absl::StatusOr<std::string> invalid = RenderOpenAiLine(
      "batch_abc", Stored(9, FormatInvalidLine(LineError{9, "body.max_tokens", "bad", {}})));
  ASSERT_TRUE(invalid.ok());
  EXPECT_EQ(
      *invalid,
      R"({"id":"batch_req_abc_9","custom_id":null,"response":{"status_code":400,"request_id":"req_abc_9","body":{"error":{"message":"line 9: body.max_tokens: bad","type":"invalid_request_error","param":null,"code":"invalid_request"}}},"error":null})");
  const nlohmann::json server = nlohmann::json::parse(*RenderOpenAiLine(
      "batch_abc", Stored(2, FormatErrorLine("r2", "max_attempts_exceeded", "gave up"))));
  EXPECT_EQ(server["response"]["status_code"], 500);
  EXPECT_EQ(server["response"]["body"]["error"]["type"], "server_error");
  EXPECT_EQ(FailureStatusCode("invalid_argument"), 400);
  EXPECT_EQ(FailureStatusCode("failed_precondition"), 400);
  EXPECT_EQ(FailureStatusCode("internal"), 500);
}

TEST(RenderOpenAiLineTest, CancelledAndExpiredRequestsKeepTheTopLevelError) {
  const StoredResult cancelled =
      Stored(3, FormatErrorLine("r3", kBatchCancelledCode, "the batch was cancelled"));
  const nlohmann::json as_cancelled =
      nlohmann::json::parse(*RenderOpenAiLine("batch_abc", cancelled));
  EXPECT_TRUE(as_cancelled["response"].is_null());
  EXPECT_EQ(as_cancelled["error"]["code"], "batch_cancelled");
  const nlohmann::json as_expired =
      nlohmann::json::parse(*RenderOpenAiLine("batch_abc", cancelled, /*expired=*/true));
  EXPECT_TRUE(as_expired["response"].is_null());
  EXPECT_EQ(as_expired["error"]["code"], "batch_expired");
  EXPECT_EQ(as_expired["custom_id"], "r3");
  EXPECT_EQ(RenderOpenAiLine("batch_abc", Stored(1, "not json")).status().code(),
            absl::StatusCode::kDataLoss);
}

}  // namespace
}  // namespace flatfleet::coordinator
