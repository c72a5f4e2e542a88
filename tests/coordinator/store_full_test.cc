// A full job store (SQLite's page cap: writes fail as on a full disk) stalls nothing for long:
// results the workers computed are kept and stored once there is room (not computed again
// after a lease runs out), no new work is claimed meanwhile, new batches are refused with a
// clear retryable error, the coordinator reports itself not ready and counts store errors.
#include <set>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "coordinator/server/coordinator_server.h"
#include "gtest/gtest.h"
#include "tests/coordinator/coordinator_test_util.h"
#include "tests/coordinator/fake_worker.h"

namespace flatfleet::coordinator {
namespace {

using testing_util::Client;
using testing_util::CompletionLines;
using testing_util::FakeWorker;
using testing_util::FakeWorkerOptions;
using testing_util::FreshDatabasePath;
using testing_util::TestCoordinatorOptions;

// The value of one series in the exposition, 0 when absent.
double SeriesValue(const std::string& exposition, const std::string& series) {
  const size_t at = exposition.find("\n" + series + " ");
  if (at == std::string::npos) return 0;
  return std::stod(exposition.substr(at + series.size() + 2));
}

TEST(StoreFullTest, ResultsAreKeptWhileTheStoreIsFullAndStoredOnceThereIsRoom) {
  FakeWorkerOptions slow;
  slow.answer_delay = absl::Milliseconds(2);
  FakeWorker worker(slow);
  CoordinatorOptions options = TestCoordinatorOptions(FreshDatabasePath("store_full"), {&worker});
  // Long enough that no lease runs out during the test: a kept result is the only way back.
  options.scheduler.lease_ms = 10 * 60 * 1000;
  auto started = CoordinatorServer::Start(options);
  ASSERT_TRUE(started.ok()) << started.status();
  CoordinatorServer& server = **started;
  Client client(server.address());

  constexpr int kRequests = 400;
  v1::CreateBatchResponse created = client.Submit(CompletionLines(kRequests));
  ASSERT_TRUE(created.has_batch());
  const std::string id = created.batch().id();
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  v1::Batch batch;
  while (absl::Now() < deadline) {
    ASSERT_TRUE(client.Get(id, &batch).ok());
    if (batch.request_counts().completed() >= 20) break;
    absl::SleepFor(absl::Milliseconds(5));
  }
  ASSERT_LT(batch.request_counts().completed(), static_cast<uint64_t>(kRequests)) << "too fast";
  // The disk fills: no page may be added.
  ASSERT_TRUE(server.store().SetSizeLimit(1).ok());
  while (absl::Now() < deadline && server.NotReadyReason().empty()) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  ASSERT_TRUE(absl::StrContains(server.NotReadyReason(), "job store cannot write"))
      << server.NotReadyReason();
  absl::SleepFor(absl::Milliseconds(500));
  const int64_t submits_while_full = worker.submits();
  const std::string exposition = server.metrics().Expose();
  EXPECT_GT(SeriesValue(exposition,
                        R"(flatfleet_coordinator_store_errors_total{operation="RecordResult"})"),
            0)
      << exposition;
  EXPECT_GT(SeriesValue(exposition, "flatfleet_coordinator_unrecorded_results"), 0) << exposition;

  // New work is refused, clearly and retryably, and nothing was created.
  {
    grpc::ClientContext context;
    v1::CreateBatchResponse refused;
    auto writer = client.stub().CreateBatch(&context, &refused);
    v1::CreateBatchRequest first;
    first.mutable_options()->set_model(testing_util::kModel);
    ASSERT_TRUE(writer->Write(first));
    v1::CreateBatchRequest lines;
    for (const std::string& line : CompletionLines(50, 1000))
      lines.mutable_lines()->add_lines(line);
    ASSERT_TRUE(writer->Write(lines));
    writer->WritesDone();
    const grpc::Status status = writer->Finish();
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE) << status.error_message();
    EXPECT_TRUE(absl::StrContains(status.error_message(), "cannot store new batches"))
        << status.error_message();
  }
  // No new claims while full: the worker is sent nothing more.
  absl::SleepFor(absl::Milliseconds(500));
  EXPECT_EQ(worker.submits(), submits_while_full);

  // Room again: everything finishes, each request answered once and computed once.
  ASSERT_TRUE(server.store().SetSizeLimit(0).ok());
  v1::Batch done = client.WaitForState(id, v1::BATCH_STATE_COMPLETED, absl::Seconds(60));
  EXPECT_EQ(done.request_counts().completed(), static_cast<uint64_t>(kRequests));
  const std::vector<v1::BatchResult> results = client.Results(id);
  std::set<std::string> seen;
  for (const v1::BatchResult& result : results) {
    EXPECT_TRUE(seen.insert(result.custom_id()).second) << result.custom_id();
    EXPECT_TRUE(result.has_response()) << result.ShortDebugString();
  }
  EXPECT_EQ(results.size(), static_cast<size_t>(kRequests));
  EXPECT_EQ(worker.submits(), kRequests);
  EXPECT_EQ(server.NotReadyReason(), "");
  EXPECT_EQ(SeriesValue(server.metrics().Expose(), "flatfleet_coordinator_unrecorded_results"), 0);
  ASSERT_TRUE(client.Get(id, &batch).ok());
  EXPECT_EQ(server.store().ListJobs(10)->size(), 1u);  // The refused batch left nothing.
}

}  // namespace
}  // namespace flatfleet::coordinator
