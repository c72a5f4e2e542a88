// Bounded public inputs: batch metadata, max_attempts, StreamResults' start_sequence and
// Generate's sampling numbers are each refused with an error naming the field; the CLI's
// client receives results as large as the coordinator sends.
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "coordinator/server/batch_client.h"
#include "coordinator/server/coordinator_server.h"
#include "gtest/gtest.h"
#include "tests/coordinator/coordinator_test_util.h"
#include "tests/coordinator/fake_worker.h"

namespace flatfleet::coordinator {
namespace {

using testing_util::Client;
using testing_util::CompletionLines;
using testing_util::FakeWorker;
using testing_util::FreshDatabasePath;
using testing_util::TestCoordinatorOptions;

class ApiLimitsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    CoordinatorOptions options = TestCoordinatorOptions(FreshDatabasePath("limits"), {&worker_});
    options.service.input_limits.max_line_bytes = 8 << 20;
    auto server = CoordinatorServer::Start(options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    auto client = BatchClient::Connect(server_->address());
    ASSERT_TRUE(client.ok()) << client.status();
    client_ = *std::move(client);
  }

  absl::StatusOr<v1::CreateBatchResponse> Submit(const v1::BatchOptions& extra, int lines = 2) {
    v1::BatchOptions options = extra;
    options.set_model(testing_util::kModel);
    return client_->Submit(options, CompletionLines(lines));
  }

  static void ExpectInvalid(const absl::Status& status, const std::string& field) {
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
    EXPECT_TRUE(absl::StrContains(status.message(), field)) << status;
  }

  FakeWorker worker_{{}};
  std::unique_ptr<CoordinatorServer> server_;
  std::unique_ptr<BatchClient> client_;
};

TEST_F(ApiLimitsTest, MetadataIsBoundedAndListBatchesKeepsWorking) {
  v1::BatchOptions huge;
  (*huge.mutable_metadata())["note"] = std::string(12 << 20, 'm');
  ExpectInvalid(Submit(huge).status(), "options.metadata['note']");
  v1::BatchOptions many;
  for (int i = 0; i < 17; ++i) (*many.mutable_metadata())[absl::StrCat("k", i)] = "v";
  ExpectInvalid(Submit(many).status(), "options.metadata has 17 pairs");
  v1::BatchOptions long_key;
  (*long_key.mutable_metadata())[std::string(65, 'k')] = "v";
  ExpectInvalid(Submit(long_key).status(), "options.metadata key");
  // The largest allowed metadata is kept whole.
  v1::BatchOptions largest;
  for (int i = 0; i < 16; ++i) {
    (*largest.mutable_metadata())[absl::StrCat(std::string(62, 'k'), i < 10 ? "0" : "", i)] =
        std::string(512, 'v');
  }
  auto created = Submit(largest);
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_EQ(created->batch().metadata_size(), 16);
  grpc::ClientContext context;
  v1::ListBatchesResponse listed;
  Client raw(server_->address());
  ASSERT_TRUE(raw.stub().ListBatches(&context, v1::ListBatchesRequest(), &listed).ok());
  ASSERT_EQ(listed.batches_size(), 1);
  EXPECT_EQ(listed.batches(0).metadata().at(std::string(62, 'k') + "00"), std::string(512, 'v'));
}

TEST_F(ApiLimitsTest, MaxAttemptsIsBounded) {
  for (uint32_t attempts : {std::numeric_limits<uint32_t>::max(), uint32_t{(1u << 31) - 1}, 101u}) {
    v1::BatchOptions options;
    options.set_max_attempts(attempts);
    ExpectInvalid(Submit(options).status(), "options.max_attempts");
  }
  v1::BatchOptions most;
  most.set_max_attempts(100);
  EXPECT_TRUE(Submit(most).ok());
}

TEST_F(ApiLimitsTest, StartSequenceBeyondAnySignedSequenceIsRefused) {
  auto created = Submit(v1::BatchOptions(), 3);
  ASSERT_TRUE(created.ok()) << created.status();
  const std::string id = created->batch().id();
  Client(server_->address()).WaitForState(id, v1::BATCH_STATE_COMPLETED);
  int seen = 0;
  const auto count = [&](const v1::BatchResult&) { return ++seen, true; };
  ExpectInvalid(client_->StreamResults(id, uint64_t{1} << 63, false, count), "start_sequence");
  ExpectInvalid(client_->StreamResults(id, std::numeric_limits<uint64_t>::max(), false, count),
                "start_sequence");
  EXPECT_EQ(seen, 0);
  EXPECT_TRUE(client_->StreamResults(id, (uint64_t{1} << 63) - 1, false, count).ok());
  EXPECT_EQ(seen, 0);
  EXPECT_TRUE(client_->StreamResults(id, 1, false, count).ok());
  EXPECT_EQ(seen, 2);
}

TEST_F(ApiLimitsTest, GenerateRefusesNonFiniteSamplingNumbers) {
  Client raw(server_->address());
  const auto generate = [&](const v1::SamplingParams& sampling) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    v1::GenerateRequest request;
    request.set_model(testing_util::kModel);
    request.mutable_body()->set_prompt("hi");
    *request.mutable_body()->mutable_sampling() = sampling;
    v1::GenerateResponse response;
    return raw.stub().Generate(&context, request, &response);
  };
  v1::SamplingParams nan_temperature;
  nan_temperature.set_temperature(std::nanf(""));
  grpc::Status status = generate(nan_temperature);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(absl::StrContains(status.error_message(), "temperature")) << status.error_message();
  v1::SamplingParams infinite_top_p;
  infinite_top_p.set_top_p(std::numeric_limits<float>::infinity());
  status = generate(infinite_top_p);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(absl::StrContains(status.error_message(), "top_p")) << status.error_message();
  // Groups start once the workers are probed, after the API listens.
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  while (server_->scheduler().connected_groups() < 1 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  v1::SamplingParams fine;
  fine.set_temperature(0.5f);
  fine.set_top_p(0.9f);
  status = generate(fine);
  EXPECT_TRUE(status.ok()) << status.error_message();
}

TEST_F(ApiLimitsTest, TheClientReceivesResultsLargerThanGrpcsDefaultLimit) {
  // The fake echoes its prompt: a 6 MiB prompt makes a result over gRPC's 4 MiB default.
  const std::string line = absl::StrCat(R"({"custom_id": "big", "body": {"prompt": ")",
                                        std::string(6 << 20, 'b'), R"(", "max_tokens": 4}})");
  v1::BatchOptions options;
  options.set_model(testing_util::kModel);
  auto created = client_->Submit(options, {line});
  ASSERT_TRUE(created.ok()) << created.status();
  ASSERT_EQ(created->errors_size(), 0);
  Client(server_->address()).WaitForState(created->batch().id(), v1::BATCH_STATE_COMPLETED);
  std::vector<v1::BatchResult> results;
  absl::Status streamed =
      client_->StreamResults(created->batch().id(), 0, false, [&](const v1::BatchResult& result) {
        results.push_back(result);
        return true;
      });
  ASSERT_TRUE(streamed.ok()) << streamed;
  ASSERT_EQ(results.size(), 1u);
  ASSERT_TRUE(results[0].has_response()) << results[0].error().message();
  EXPECT_GT(results[0].response().text().size(), size_t{6} << 20);
}

}  // namespace
}  // namespace flatfleet::coordinator
