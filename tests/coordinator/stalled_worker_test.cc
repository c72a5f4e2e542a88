// A worker that stalls while keeping its connection (frozen: it sends nothing, as when
// SIGSTOPped; or hung: heartbeats but no progress) loses its work to healthy groups within
// seconds, not a lease; it is backed off so it cannot keep taking work; CancelBatch of work it
// held finishes within the liveness timeout.
#include <set>
#include <string>

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

FakeWorkerOptions Heartbeating(bool hold_answers = false) {
  FakeWorkerOptions options;
  options.heartbeat_interval = absl::Milliseconds(100);
  options.answer_delay = absl::Milliseconds(5);
  options.hold_answers = hold_answers;
  return options;
}

CoordinatorOptions FastLiveness(const std::string& name, const std::vector<FakeWorker*>& workers) {
  CoordinatorOptions options = TestCoordinatorOptions(FreshDatabasePath(name), workers);
  options.scheduler.liveness_timeout = absl::Seconds(1);
  options.scheduler.progress_timeout = absl::Seconds(1);
  options.scheduler.health_timeout = absl::Milliseconds(500);
  // The default 30-minute lease: only the liveness checks can bring the work back in time.
  return options;
}

std::unique_ptr<CoordinatorServer> StartConnected(const CoordinatorOptions& options, int groups) {
  auto server = CoordinatorServer::Start(options);
  EXPECT_TRUE(server.ok()) << server.status();
  if (!server.ok()) return nullptr;
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  while ((*server)->scheduler().connected_groups() < groups && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_EQ((*server)->scheduler().connected_groups(), groups);
  return *std::move(server);
}

void WaitForSubmits(const FakeWorker& worker, int64_t count) {
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  while (worker.submits() < count && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(2));
  ASSERT_GE(worker.submits(), count);
}

void ExpectEachAnsweredOnce(Client& client, const std::string& id, int count) {
  const std::vector<v1::BatchResult> results = client.Results(id);
  std::set<std::string> seen;
  for (const v1::BatchResult& result : results) {
    EXPECT_TRUE(seen.insert(result.custom_id()).second) << result.custom_id();
    EXPECT_TRUE(result.has_response()) << result.ShortDebugString();
  }
  EXPECT_EQ(results.size(), static_cast<size_t>(count));
}

TEST(StalledWorkerTest, AFrozenWorkersWorkRunsElsewhereWithinSeconds) {
  FakeWorker frozen(Heartbeating()), healthy(Heartbeating());
  auto server = StartConnected(FastLiveness("frozen", {&frozen, &healthy}), 2);
  ASSERT_NE(server, nullptr);
  Client client(server->address());
  constexpr int kRequests = 300;
  // Two attempts: a request held by the frozen worker spends one, and must not need more.
  v1::CreateBatchResponse created = client.Submit(CompletionLines(kRequests), 2);
  ASSERT_TRUE(created.has_batch());
  WaitForSubmits(frozen, 20);
  frozen.Freeze(true);
  const absl::Time frozen_at = absl::Now();
  const int64_t taken_before_freeze = frozen.submits();
  v1::Batch done =
      client.WaitForState(created.batch().id(), v1::BATCH_STATE_COMPLETED, absl::Seconds(20));
  EXPECT_LT(absl::Now() - frozen_at, absl::Seconds(15));
  EXPECT_EQ(done.request_counts().completed(), static_cast<uint64_t>(kRequests));
  EXPECT_EQ(done.request_counts().failed(), 0u);
  ExpectEachAnsweredOnce(client, created.batch().id(), kRequests);
  // The frozen worker was given at most the rest of its window before the stall was seen, and
  // nothing after (its socket still takes what is sent, as a stopped process's would).
  EXPECT_LE(frozen.submits(), taken_before_freeze + 16);
  EXPECT_NE(server->metrics().Expose().find("flatfleet_coordinator_group_stalls_total 1"),
            std::string::npos)
      << server->metrics().Expose();
  frozen.Freeze(false);
}

TEST(StalledWorkerTest, AHungEngineIsBackedOffAndCannotKeepTakingWork) {
  // Heartbeats keep coming, but its engine never finishes anything.
  FakeWorker hung(Heartbeating(/*hold_answers=*/true)), healthy(Heartbeating());
  CoordinatorOptions options = FastLiveness("hung", {&hung, &healthy});
  options.scheduler.in_flight_window = 8;
  auto server = StartConnected(options, 2);
  ASSERT_NE(server, nullptr);
  Client client((*server).address());
  constexpr int kRequests = 2000;
  v1::CreateBatchResponse created = client.Submit(CompletionLines(kRequests), 3);
  ASSERT_TRUE(created.has_batch());
  v1::Batch done =
      client.WaitForState(created.batch().id(), v1::BATCH_STATE_COMPLETED, absl::Seconds(60));
  EXPECT_EQ(done.request_counts().completed(), static_cast<uint64_t>(kRequests));
  EXPECT_EQ(done.request_counts().failed(), 0u);
  ExpectEachAnsweredOnce(client, created.batch().id(), kRequests);
  // Backed off 1 s, 2 s, 4 s, ... between its windows of 8: a few windows, not one per second.
  EXPECT_GT(hung.submits(), 0);
  EXPECT_LE(hung.submits(), 8 * 5) << "the hung group kept taking work";
}

TEST(StalledWorkerTest, CancellingABatchHeldByAFrozenWorkerEndsWithinTheLivenessTimeout) {
  FakeWorker frozen(Heartbeating(/*hold_answers=*/true));
  auto server = StartConnected(FastLiveness("frozen_cancel", {&frozen}), 1);
  ASSERT_NE(server, nullptr);
  Client client(server->address());
  v1::CreateBatchResponse created = client.Submit(CompletionLines(50));
  ASSERT_TRUE(created.has_batch());
  WaitForSubmits(frozen, 16);
  frozen.Freeze(true);
  grpc::ClientContext context;
  v1::CancelBatchRequest cancel;
  cancel.set_batch_id(created.batch().id());
  v1::Batch cancelling;
  ASSERT_TRUE(client.stub().CancelBatch(&context, cancel, &cancelling).ok());
  const absl::Time cancelled_at = absl::Now();
  v1::Batch cancelled =
      client.WaitForState(created.batch().id(), v1::BATCH_STATE_CANCELLED, absl::Seconds(10));
  EXPECT_LT(absl::Now() - cancelled_at, absl::Seconds(4));
  EXPECT_EQ(cancelled.request_counts().cancelled(), 50u);
  EXPECT_EQ(client.Results(created.batch().id()).size(), 50u);
  frozen.Freeze(false);
}

}  // namespace
}  // namespace flatfleet::coordinator
