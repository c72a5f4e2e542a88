// The public and internal protos build, serialize and parse back unchanged.
#include "flatfleet/v1/batch.grpc.pb.h"
#include "flatfleet/v1/batch.pb.h"
#include "flatfleet/v1/worker.grpc.pb.h"
#include "flatfleet/v1/worker.pb.h"
#include "gtest/gtest.h"

namespace flatfleet {
namespace {

TEST(ProtoRoundTripTest, CreateBatchOptionsAndLines) {
  v1::CreateBatchRequest options_message;
  v1::BatchOptions* options = options_message.mutable_options();
  options->set_model("tiny-llama");
  options->set_max_attempts(3);
  (*options->mutable_metadata())["owner"] = "team-a";

  v1::CreateBatchRequest lines_message;
  lines_message.mutable_lines()->add_lines(
      R"({"custom_id": "r1", "body": {"prompt": "Hi", "max_tokens": 4}})");

  for (const v1::CreateBatchRequest& message : {options_message, lines_message}) {
    std::string wire;
    ASSERT_TRUE(message.SerializeToString(&wire));
    v1::CreateBatchRequest parsed;
    ASSERT_TRUE(parsed.ParseFromString(wire));
    EXPECT_EQ(parsed.SerializeAsString(), wire);
    EXPECT_EQ(parsed.part_case(), message.part_case());
  }
  v1::CreateBatchRequest parsed;
  ASSERT_TRUE(parsed.ParseFromString(options_message.SerializeAsString()));
  EXPECT_EQ(parsed.options().model(), "tiny-llama");
  EXPECT_EQ(parsed.options().metadata().at("owner"), "team-a");
}

TEST(ProtoRoundTripTest, ResultAndWorkItemKeepOptionalFieldsAndOneofs) {
  v1::BatchResult result;
  result.set_sequence(41);
  result.set_custom_id("r1");
  v1::Response* response = result.mutable_response();
  response->set_text("hello");
  response->add_token_ids(17);
  response->set_finish_reason(v1::FINISH_REASON_LENGTH);
  response->mutable_usage()->set_total_tokens(9);
  v1::BatchResult parsed_result;
  ASSERT_TRUE(parsed_result.ParseFromString(result.SerializeAsString()));
  EXPECT_EQ(parsed_result.outcome_case(), v1::BatchResult::kResponse);
  EXPECT_EQ(parsed_result.response().finish_reason(), v1::FINISH_REASON_LENGTH);
  EXPECT_EQ(parsed_result.sequence(), 41u);

  v1::WorkItem item;
  item.set_work_id(7);
  v1::SamplingParams* sampling = item.mutable_submit()->mutable_sampling();
  sampling->set_temperature(0.0f);  // Set to 0 is not the same as unset.
  sampling->add_stop("\n");
  item.mutable_submit()->mutable_messages()->add_messages()->set_role("user");
  v1::WorkItem parsed_item;
  ASSERT_TRUE(parsed_item.ParseFromString(item.SerializeAsString()));
  ASSERT_TRUE(parsed_item.submit().sampling().has_temperature());
  EXPECT_FALSE(parsed_item.submit().sampling().has_top_p());
  EXPECT_EQ(parsed_item.submit().input_case(), v1::RequestBody::kMessages);
  // The generated service stubs exist for both services.
  EXPECT_STREQ(v1::BatchService::service_full_name(), "flatfleet.v1.BatchService");
  EXPECT_STREQ(v1::WorkerService::service_full_name(), "flatfleet.v1.WorkerService");
}

}  // namespace
}  // namespace flatfleet
