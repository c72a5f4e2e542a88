// Uploads never lose lines silently: a line that is not valid UTF-8, or too long to send in a
// message, becomes that line's failed result while every other line runs; an upload that did
// not arrive whole is refused; an input file is read without holding an oversized line.
#include <fstream>
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

class UploadIntegrityTest : public ::testing::Test {
 protected:
  void StartWith(CoordinatorOptions options) {
    absl::StatusOr<std::unique_ptr<CoordinatorServer>> started = CoordinatorServer::Start(options);
    ASSERT_TRUE(started.ok()) << started.status();
    server_ = *std::move(started);
    absl::StatusOr<std::unique_ptr<BatchClient>> client = BatchClient::Connect(server_->address());
    ASSERT_TRUE(client.ok()) << client.status();
    client_ = *std::move(client);
  }
  void Start(const std::string& name) {
    StartWith(TestCoordinatorOptions(FreshDatabasePath(name), {&worker_}));
  }

  // Submits through the CLI's client; expects a batch and returns it with its line errors.
  v1::CreateBatchResponse SubmitOk(const std::vector<std::string>& lines) {
    v1::BatchOptions options;
    options.set_model(testing_util::kModel);
    absl::StatusOr<v1::CreateBatchResponse> created = client_->Submit(options, lines);
    EXPECT_TRUE(created.ok()) << created.status();
    return created.value_or(v1::CreateBatchResponse());
  }

  // Waits for the batch to complete; each custom_id exactly once; returns the failed ones.
  std::vector<v1::BatchResult> Failures(const std::string& id, size_t total) {
    Client raw(server_->address());
    v1::Batch done = raw.WaitForState(id, v1::BATCH_STATE_COMPLETED);
    EXPECT_EQ(done.request_counts().total(), total);
    std::vector<v1::BatchResult> results = raw.Results(id);
    EXPECT_EQ(results.size(), total);
    std::set<std::string> seen;
    std::vector<v1::BatchResult> failed;
    for (const v1::BatchResult& result : results) {
      EXPECT_TRUE(seen.insert(result.custom_id()).second) << result.custom_id();
      if (result.has_error()) failed.push_back(result);
    }
    return failed;
  }

  FakeWorker worker_{{}};
  std::unique_ptr<CoordinatorServer> server_;
  std::unique_ptr<BatchClient> client_;
};

TEST_F(UploadIntegrityTest, InvalidUtf8LateInTheUploadFailsOnlyItsLine) {
  Start("utf8_late");
  std::vector<std::string> lines = CompletionLines(3000);
  // Line 2,501 is in a later message than the first (messages are ~1 MiB; lines are short, so
  // put the byte into a long prompt to spread the upload over several messages).
  constexpr std::string_view kPrompt = R"("prompt": ")";
  for (std::string& line : lines) line.insert(line.find(kPrompt) + kPrompt.size(), 400, 'x');
  lines[2500].insert(lines[2500].find(kPrompt) + kPrompt.size(), "\xff");
  const v1::CreateBatchResponse created = SubmitOk(lines);
  ASSERT_TRUE(created.has_batch());
  EXPECT_EQ(created.batch().request_counts().total(), 3000u);
  ASSERT_EQ(created.errors_size(), 1);
  EXPECT_EQ(created.errors(0).line(), 2501u);
  const std::vector<v1::BatchResult> failed = Failures(created.batch().id(), 3000);
  // The line does not parse, so its result names no custom_id; every other line ran.
  ASSERT_EQ(failed.size(), 1u);
  EXPECT_EQ(failed[0].custom_id(), "");
  EXPECT_EQ(failed[0].error().code(), "invalid_request");
}

TEST_F(UploadIntegrityTest, InvalidUtf8InTheFirstMessageFailsOnlyItsLine) {
  Start("utf8_first");
  std::vector<std::string> lines = CompletionLines(20);
  lines[1] = "{\"custom_id\": \"r1\", \"body\": {\"prompt\": \"\xff\xfe\", \"max_tokens\": 8}}";
  const v1::CreateBatchResponse created = SubmitOk(lines);
  ASSERT_TRUE(created.has_batch());
  ASSERT_EQ(created.errors_size(), 1);
  EXPECT_EQ(created.errors(0).line(), 2u);
  const std::vector<v1::BatchResult> failed = Failures(created.batch().id(), 20);
  ASSERT_EQ(failed.size(), 1u);
  EXPECT_EQ(failed[0].custom_id(), "");
  EXPECT_EQ(failed[0].error().code(), "invalid_request");
}

TEST_F(UploadIntegrityTest, ALineTooLongForAMessageBecomesOneFailedResult) {
  Start("huge_line");
  std::vector<std::string> lines = CompletionLines(10);
  lines[4] = absl::StrCat(R"({"custom_id": "r4", "body": {"prompt": ")", std::string(17 << 20, 'a'),
                          R"("}})");
  const v1::CreateBatchResponse created = SubmitOk(lines);
  ASSERT_TRUE(created.has_batch());
  ASSERT_EQ(created.errors_size(), 1);
  EXPECT_EQ(created.errors(0).line(), 5u);
  EXPECT_TRUE(absl::StrContains(created.errors(0).message(), "bytes"))
      << created.errors(0).message();
  const std::vector<v1::BatchResult> failed = Failures(created.batch().id(), 10);
  ASSERT_EQ(failed.size(), 1u);
  // An oversized line has no parsed custom_id: its result names none.
  EXPECT_EQ(failed[0].custom_id(), "");
}

TEST_F(UploadIntegrityTest, AnUploadThatDidNotArriveWholeIsRefused) {
  Start("short_upload");
  Client raw(server_->address());
  grpc::ClientContext context;
  v1::CreateBatchResponse response;
  auto writer = raw.stub().CreateBatch(&context, &response);
  v1::CreateBatchRequest options;
  options.mutable_options()->set_model(testing_util::kModel);
  ASSERT_TRUE(writer->Write(options));
  v1::CreateBatchRequest chunk;
  for (const std::string& line : CompletionLines(5)) chunk.mutable_lines()->add_lines(line);
  ASSERT_TRUE(writer->Write(chunk));
  v1::CreateBatchRequest end;
  end.mutable_end()->set_line_count(6);  // One line never arrived.
  ASSERT_TRUE(writer->Write(end));
  writer->WritesDone();
  const grpc::Status status = writer->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::DATA_LOSS) << status.error_message();
  EXPECT_FALSE(response.has_batch());
}

TEST_F(UploadIntegrityTest, AnInputFileWithAHugeLineIsReadWithoutHoldingIt) {
  const std::string dir = ::testing::TempDir() + "/upload_integrity_inputs";
  std::filesystem::create_directories(dir);
  const std::string path = dir + "/huge.jsonl";
  {
    std::ofstream file(path, std::ios::binary | std::ios::trunc);
    const std::vector<std::string> lines = CompletionLines(3);
    file << lines[0] << "\n" << std::string(3 << 20, '{') << "\n" << lines[2];  // No final '\n'.
  }
  CoordinatorOptions options = TestCoordinatorOptions(FreshDatabasePath("input_huge"), {&worker_});
  options.service.input_dirs = {dir};
  options.service.input_limits.max_line_bytes = 1 << 20;
  StartWith(options);
  v1::BatchOptions batch;
  batch.set_model(testing_util::kModel);
  batch.set_input_path(path);
  absl::StatusOr<v1::CreateBatchResponse> created = client_->Submit(batch, {});
  ASSERT_TRUE(created.ok()) << created.status();
  ASSERT_EQ(created->errors_size(), 1);
  EXPECT_EQ(created->errors(0).line(), 2u);
  EXPECT_EQ(created->errors(0).message(),
            absl::StrCat("line is ", 3 << 20, " bytes; at most ", 1 << 20, " are allowed"));
  const std::vector<v1::BatchResult> failed = Failures(created->batch().id(), 3);
  EXPECT_EQ(failed.size(), 1u);
}

// A client that lost the answer to its upload retries with the same idempotency key and gets
// the batch its first upload created, not a second batch running every line again.
TEST_F(UploadIntegrityTest, ARetriedUploadWithItsIdempotencyKeyIsOneBatch) {
  Start("idempotent_upload");
  v1::BatchOptions options;
  options.set_model(testing_util::kModel);
  options.set_idempotency_key("client-upload-42");
  const std::vector<std::string> lines = CompletionLines(30);
  absl::StatusOr<v1::CreateBatchResponse> first = client_->Submit(options, lines);
  ASSERT_TRUE(first.ok()) << first.status();
  absl::StatusOr<v1::CreateBatchResponse> retry = client_->Submit(options, lines);
  ASSERT_TRUE(retry.ok()) << retry.status();
  EXPECT_EQ(retry->batch().id(), first->batch().id());
  const std::vector<v1::BatchResult> failed = Failures(first->batch().id(), 30);
  EXPECT_TRUE(failed.empty());
  EXPECT_EQ(server_->store().ListJobs(10)->size(), 1u);
  EXPECT_EQ(worker_.submits(), 30);
  options.set_idempotency_key(std::string(257, 'k'));
  EXPECT_EQ(client_->Submit(options, lines).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace flatfleet::coordinator
