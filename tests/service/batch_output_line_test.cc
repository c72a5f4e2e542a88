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
