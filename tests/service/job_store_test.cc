#include "coordinator/job_store.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <latch>
#include <map>
#include <set>
#include <thread>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/service/job_store_test_util.h"

namespace flatfleet::coordinator {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using testing_util::MakeRequests;
using testing_util::Success;
using testing_util::TempDatabasePath;

std::unique_ptr<JobStore> OpenStore(const std::string& path, JobStore::Options options = {}) {
  absl::StatusOr<std::unique_ptr<JobStore>> store = JobStore::Open(path, std::move(options));
  EXPECT_TRUE(store.ok()) << store.status();
  return store.ok() ? *std::move(store) : nullptr;
}

JobOptions Options(std::string model = "tiny", int max_attempts = 3) {
  JobOptions options;
  options.model = std::move(model);
  options.max_attempts = max_attempts;
  return options;
}

std::vector<int64_t> Lines(const std::vector<ClaimedRequest>& claimed) {
  std::vector<int64_t> lines;
  for (const ClaimedRequest& request : claimed) lines.push_back(request.key.line_number);
  return lines;
}

TEST(JobStoreTest, CreatesJobWithPendingRequests) {
  auto store = OpenStore(TempDatabasePath("create"));
  JobOptions options = Options();
  options.metadata["owner"] = "team-a";
  absl::StatusOr<JobRecord> job = store->CreateJob(options, MakeRequests(3));
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_THAT(job->id, HasSubstr("batch_"));
  EXPECT_EQ(job->state, JobState::kInProgress);
  EXPECT_EQ(job->counts.total, 3);
  EXPECT_EQ(job->counts.pending, 3);
  EXPECT_EQ(job->options.model, "tiny");
  EXPECT_EQ(job->options.metadata.at("owner"), "team-a");
  EXPECT_GT(job->created_at_ms, 0);

  absl::StatusOr<JobRecord> again = store->GetJob(job->id);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->counts.total, 3);
}

TEST(JobStoreTest, RejectsBadJobsAtomically) {
  auto store = OpenStore(TempDatabasePath("reject"));
  std::vector<BatchRequestLine> requests = MakeRequests(3);
  requests[2].custom_id = requests[0].custom_id;  // The UNIQUE constraint fires on row 3.
  absl::StatusOr<JobRecord> job = store->CreateJob(Options(), requests);
  ASSERT_FALSE(job.ok());
  EXPECT_THAT(job.status().message(), HasSubstr("CreateJob(job batch_"));
  EXPECT_THAT(job.status().message(), HasSubstr("line 3"));
  EXPECT_TRUE(store->ListJobs(10)->empty());  // Rows 1-2 were rolled back with the job.
  EXPECT_FALSE(store->CreateJob(Options(""), MakeRequests(1)).ok());
  EXPECT_FALSE(store->CreateJob(Options("tiny", 0), MakeRequests(1)).ok());
  EXPECT_FALSE(store->CreateJob(Options(), {}).ok());
}

TEST(JobStoreTest, ErrorsNameOperationAndJob) {
  auto store = OpenStore(TempDatabasePath("errors"));
  absl::Status status = store->GetJob("batch_missing").status();
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(status.message(), HasSubstr("GetJob(job batch_missing)"));
  status = store->RecordResult({"batch_missing", 1}, Success("x")).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(status.message(), HasSubstr("RecordResult(job batch_missing, line 1)"));
  EXPECT_THAT(store->ReadResults("batch_missing", 0, 10).status().message(),
              HasSubstr("ReadResults(job batch_missing)"));
  EXPECT_THAT(store->CancelJob("batch_missing").status().message(),
              HasSubstr("CancelJob(job batch_missing)"));
}

TEST(JobStoreTest, ClaimsOldestJobFirstInLineOrderAndOnlyForItsModel) {
  auto store = OpenStore(TempDatabasePath("claim"));
  auto first = store->CreateJob(Options(), MakeRequests(3));
  auto other_model = store->CreateJob(Options("big"), MakeRequests(2));
  auto second = store->CreateJob(Options(), MakeRequests(2));
  ASSERT_TRUE(first.ok() && other_model.ok() && second.ok());

  auto claimed = store->ClaimPending("tiny", 4, "w1", 60'000);
  ASSERT_TRUE(claimed.ok()) << claimed.status();
  ASSERT_EQ(claimed->size(), 4u);
  EXPECT_EQ((*claimed)[0].key.job_id, first->id);
  EXPECT_THAT(Lines(*claimed), ElementsAre(1, 2, 3, 1));
  EXPECT_EQ((*claimed)[3].key.job_id, second->id);
  EXPECT_EQ((*claimed)[0].custom_id, "r0");
  EXPECT_THAT((*claimed)[0].body_json, HasSubstr("\"prompt\":\"p0\""));
  EXPECT_EQ((*claimed)[0].attempt, 1);

  auto rest = store->ClaimPending("tiny", 10, "w2", 60'000);
  ASSERT_TRUE(rest.ok());
  ASSERT_EQ(rest->size(), 1u);
  EXPECT_EQ((*rest)[0].key, (RequestKey{second->id, 2}));
  EXPECT_TRUE(store->ClaimPending("tiny", 10, "w2", 60'000)->empty());
  EXPECT_EQ(store->ClaimPending("big", 10, "w3", 60'000)->size(), 2u);
  EXPECT_EQ(store->GetJob(first->id)->counts.in_flight, 3);
}

TEST(JobStoreTest, RecordsEachResultExactlyOnce) {
  auto store = OpenStore(TempDatabasePath("once"));
  auto job = store->CreateJob(Options(), MakeRequests(2));
  ASSERT_TRUE(job.ok());
  auto claimed = store->ClaimPending("tiny", 2, "w1", 60'000);
  ASSERT_EQ(claimed->size(), 2u);

  EXPECT_EQ(store->RecordResult((*claimed)[1].key, Success("second")).value(), true);
  EXPECT_EQ(store->RecordResult((*claimed)[1].key, Success("again")).value(), false);
  auto results = store->ReadResults(job->id, 0, 10);
  ASSERT_TRUE(results.ok()) << results.status();
  ASSERT_EQ(results->size(), 1u);
  EXPECT_EQ((*results)[0].sequence, 0);
  EXPECT_EQ((*results)[0].custom_id, "r1");
  EXPECT_EQ((*results)[0].output_line, "{\"text\":\"second\"}");
  EXPECT_EQ(store->GetJob(job->id)->counts.completed, 1);
  EXPECT_EQ(store->GetJob(job->id)->state, JobState::kInProgress);

  ASSERT_TRUE(store->RecordResult((*claimed)[0].key, Success("first")).value());
  const JobRecord done = *store->GetJob(job->id);
  EXPECT_EQ(done.state, JobState::kCompleted);
  EXPECT_EQ(done.counts.completed, 2);
  EXPECT_EQ(done.counts.in_flight, 0);
  // Resuming from an offset returns only the tail.
  auto tail = store->ReadResults(job->id, 1, 10);
  ASSERT_EQ(tail->size(), 1u);
  EXPECT_EQ((*tail)[0].sequence, 1);
  EXPECT_EQ((*tail)[0].custom_id, "r0");
  EXPECT_TRUE(store->ReadResults(job->id, 2, 10)->empty());
}

TEST(JobStoreTest, LateResultAfterRequeueIsRecordedOnce) {
  auto store = OpenStore(TempDatabasePath("late"));
  auto job = store->CreateJob(Options(), MakeRequests(1));
  ASSERT_TRUE(job.ok());
  auto first = store->ClaimPending("tiny", 1, "w1", 60'000);
  ASSERT_EQ(store->RequeueWorker("w1", "worker lost")->requeued, 1);
  auto second = store->ClaimPending("tiny", 1, "w2", 60'000);
  ASSERT_EQ(second->size(), 1u);
  EXPECT_EQ((*second)[0].attempt, 2);
  // The "dead" worker answers after all, then the retry answers too.
  EXPECT_TRUE(store->RecordResult((*first)[0].key, Success("from w1")).value());
  EXPECT_FALSE(store->RecordResult((*second)[0].key, Success("from w2")).value());
  auto results = store->ReadResults(job->id, 0, 10);
  ASSERT_EQ(results->size(), 1u);
  EXPECT_EQ((*results)[0].output_line, "{\"text\":\"from w1\"}");
  EXPECT_EQ(store->GetJob(job->id)->state, JobState::kCompleted);
}

TEST(JobStoreTest, RetriesAreBounded) {
  auto store = OpenStore(TempDatabasePath("retries"));
  auto job = store->CreateJob(Options("tiny", /*max_attempts=*/2), MakeRequests(1));
  ASSERT_TRUE(job.ok());
  ASSERT_EQ(store->ClaimPending("tiny", 1, "w1", 60'000)->size(), 1u);
  RequeueReport report = *store->RequeueWorker("w1", "worker crashed");
  EXPECT_EQ(report.requeued, 1);
  EXPECT_EQ(report.failed, 0);
  auto retry = store->ClaimPending("tiny", 1, "w2", 60'000);
  ASSERT_EQ(retry->size(), 1u);
  EXPECT_EQ((*retry)[0].attempt, 2);
  report = *store->RequeueWorker("w2", "worker crashed again");
  EXPECT_EQ(report.requeued, 0);
  EXPECT_EQ(report.failed, 1);

  EXPECT_TRUE(store->ClaimPending("tiny", 1, "w3", 60'000)->empty());
  const JobRecord done = *store->GetJob(job->id);
  EXPECT_EQ(done.state, JobState::kCompleted);
  EXPECT_EQ(done.counts.failed, 1);
  auto results = store->ReadResults(job->id, 0, 10);
  ASSERT_EQ(results->size(), 1u);
  EXPECT_EQ((*results)[0].outcome, ResultOutcome::kFailed);
  EXPECT_THAT((*results)[0].output_line, HasSubstr("\"custom_id\":\"r0\""));
  EXPECT_THAT((*results)[0].output_line, HasSubstr("max_attempts_exceeded"));
  EXPECT_THAT((*results)[0].output_line, HasSubstr("worker crashed again"));
  // A requeue that matches nothing changes nothing.
  EXPECT_EQ(store->RequeueWorker("w2", "again")->failed, 0);
}

TEST(JobStoreTest, RequeuesOnlyExpiredLeases) {
  std::atomic<int64_t> now{1'000'000};
  JobStore::Options options;
  options.clock_ms = [&] { return now.load(); };
  auto store = OpenStore(TempDatabasePath("lease"), options);
  auto job = store->CreateJob(Options(), MakeRequests(2));
  ASSERT_TRUE(job.ok());
  ASSERT_EQ(store->ClaimPending("tiny", 1, "short", 1'000)->size(), 1u);
  ASSERT_EQ(store->ClaimPending("tiny", 1, "long", 10'000)->size(), 1u);
  now += 5'000;
  EXPECT_EQ(store->RequeueExpiredLeases("lease expired")->requeued, 1);
  auto reclaimed = store->ClaimPending("tiny", 5, "w", 1'000);
  ASSERT_EQ(reclaimed->size(), 1u);
  EXPECT_EQ((*reclaimed)[0].key.line_number, 1);
}

TEST(JobStoreTest, CancelStopsPendingAndWaitsForRunning) {
  auto store = OpenStore(TempDatabasePath("cancel"));
  auto job = store->CreateJob(Options(), MakeRequests(3));
  ASSERT_TRUE(job.ok());
  auto claimed = store->ClaimPending("tiny", 1, "w1", 60'000);
  ASSERT_EQ(claimed->size(), 1u);

  absl::StatusOr<CancelReport> cancel = store->CancelJob(job->id);
  ASSERT_TRUE(cancel.ok()) << cancel.status();
  EXPECT_EQ(cancel->job.state, JobState::kCancelling);
  EXPECT_EQ(cancel->job.counts.cancelled, 2);
  EXPECT_THAT(cancel->in_flight, ElementsAre((*claimed)[0].key));
  EXPECT_TRUE(store->ClaimPending("tiny", 5, "w2", 60'000)->empty());

  // The running request finishes: its result is kept and the job is now cancelled.
  EXPECT_TRUE(store->RecordResult((*claimed)[0].key, Success("done")).value());
  const JobRecord cancelled = *store->GetJob(job->id);
  EXPECT_EQ(cancelled.state, JobState::kCancelled);
  EXPECT_EQ(cancelled.counts.completed, 1);
  EXPECT_EQ(cancelled.counts.cancelled, 2);
  EXPECT_EQ(store->CancelJob(job->id)->job.state, JobState::kCancelled);  // Idempotent.
}

TEST(JobStoreTest, CancelOfIdleJobIsImmediateAndOfFinishedJobAnError) {
  auto store = OpenStore(TempDatabasePath("cancel_idle"));
  auto idle = store->CreateJob(Options(), MakeRequests(2));
  ASSERT_TRUE(idle.ok());
  EXPECT_EQ(store->CancelJob(idle->id)->job.state, JobState::kCancelled);

  auto finished = store->CreateJob(Options(), MakeRequests(1));
  auto claimed = store->ClaimPending("tiny", 1, "w1", 60'000);
  ASSERT_TRUE(store->RecordResult((*claimed)[0].key, Success("x")).value());
  absl::Status status = store->CancelJob(finished->id).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(status.message(), HasSubstr(finished->id));
  EXPECT_THAT(status.message(), HasSubstr("already completed"));
}

TEST(JobStoreTest, RequeueDuringCancelCancels) {
  auto store = OpenStore(TempDatabasePath("cancel_requeue"));
  auto job = store->CreateJob(Options(), MakeRequests(1));
  ASSERT_EQ(store->ClaimPending("tiny", 1, "w1", 60'000)->size(), 1u);
  ASSERT_EQ(store->CancelJob(job->id)->job.state, JobState::kCancelling);
  EXPECT_EQ(store->RequeueWorker("w1", "stopped")->cancelled, 1);
  EXPECT_EQ(store->GetJob(job->id)->state, JobState::kCancelled);
}

// Every request of a cancelled job ends with exactly one output line: its result, or a
// batch_cancelled error whether it was pending or running when the cancel came.
TEST(JobStoreTest, EveryRequestOfACancelledJobHasOneLine) {
  auto store = OpenStore(TempDatabasePath("cancel_lines"));
  auto job = store->CreateJob(Options(), MakeRequests(5));
  ASSERT_TRUE(job.ok());
  auto claimed = store->ClaimPending("tiny", 3, "w1", 60'000);
  ASSERT_EQ(claimed->size(), 3u);
  ASSERT_TRUE(store->RecordResult((*claimed)[0].key, Success("done")).value());
  ASSERT_EQ(store->CancelJob(job->id)->job.state, JobState::kCancelling);
  // One running request is reported cancelled by its worker, the other's worker is lost.
  EXPECT_TRUE(store->ReleaseInFlight((*claimed)[1].key, "cancelled").value());
  EXPECT_EQ(store->RequeueWorker("w1", "worker lost")->cancelled, 1);
  const JobRecord cancelled = *store->GetJob(job->id);
  EXPECT_EQ(cancelled.state, JobState::kCancelled);
  EXPECT_EQ(cancelled.counts.completed, 1);
  EXPECT_EQ(cancelled.counts.cancelled, 4);
  auto results = store->ReadResults(job->id, 0, 100);
  ASSERT_TRUE(results.ok()) << results.status();
  std::map<std::string, int> lines;
  for (const StoredResult& result : *results) {
    ++lines[result.custom_id];
    if (result.custom_id != (*claimed)[0].custom_id) {
      EXPECT_THAT(result.output_line, HasSubstr("\"batch_cancelled\""));
      EXPECT_EQ(result.outcome, ResultOutcome::kFailed);
    }
  }
  EXPECT_EQ(results->size(), 5u);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(lines[absl::StrCat("r", i)], 1) << i;
  // A late answer from the lost worker changes nothing.
  EXPECT_FALSE(store->RecordResult((*claimed)[2].key, Success("late")).value());
  EXPECT_EQ(store->ReadResults(job->id, 0, 100)->size(), 5u);
}

TEST(JobStoreTest, ListsNewestFirstInPages) {
  auto store = OpenStore(TempDatabasePath("list"));
  std::vector<std::string> ids;
  for (int i = 0; i < 5; ++i) ids.push_back(store->CreateJob(Options(), MakeRequests(1))->id);
  auto page = store->ListJobs(2);
  ASSERT_TRUE(page.ok());
  ASSERT_EQ(page->size(), 2u);
  EXPECT_EQ((*page)[0].id, ids[4]);
  EXPECT_EQ((*page)[1].id, ids[3]);
  auto next = store->ListJobs(10, page->back().position);
  ASSERT_EQ(next->size(), 3u);
  EXPECT_EQ((*next)[2].id, ids[0]);
}

TEST(JobStoreTest, ReopenKeepsEverythingAndRecoversInFlight) {
  const std::string path = TempDatabasePath("reopen");
  std::string job_id;
  {
    auto store = OpenStore(path);
    auto job = store->CreateJob(Options("tiny", 5), MakeRequests(3));
    ASSERT_TRUE(job.ok());
    job_id = job->id;
    auto claimed = store->ClaimPending("tiny", 2, "w1", 60'000);
    ASSERT_TRUE(store->RecordResult((*claimed)[0].key, Success("kept")).value());
    EXPECT_EQ(store->recovered_on_open(), 0);
  }
  auto store = OpenStore(path);
  EXPECT_EQ(store->recovered_on_open(), 1);  // Line 2 was in flight.
  const JobRecord job = *store->GetJob(job_id);
  EXPECT_EQ(job.state, JobState::kInProgress);
  EXPECT_EQ(job.options.max_attempts, 5);
  EXPECT_EQ(job.counts.completed, 1);
  EXPECT_EQ(job.counts.pending, 2);
  EXPECT_EQ(job.counts.in_flight, 0);
  auto results = store->ReadResults(job_id, 0, 10);
  ASSERT_EQ(results->size(), 1u);
  EXPECT_EQ((*results)[0].output_line, "{\"text\":\"kept\"}");
  // The recovered request did not spend an attempt.
  auto claimed = store->ClaimPending("tiny", 5, "w2", 60'000);
  EXPECT_THAT(Lines(*claimed), ElementsAre(2, 3));
  EXPECT_EQ((*claimed)[0].attempt, 1);
}

TEST(JobStoreTest, ConcurrentClaimersNeverGetTheSameRequest) {
  const std::string path = TempDatabasePath("concurrent");
  constexpr int kRequests = 400;
  {
    auto store = OpenStore(path);
    ASSERT_TRUE(store->CreateJob(Options(), MakeRequests(kRequests)).ok());
  }
  std::vector<std::vector<int64_t>> claimed_by(2);
  std::vector<std::thread> threads;
  std::atomic<int> errors{0};
  std::latch both_open(2);
  // Each claimer waits after its first claim until the other has claimed too, so both really
  // compete for the same rows however the scheduler runs them (under load one thread could
  // otherwise drain the job before the other claims once).
  std::latch both_claimed(2);
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([&, t] {
      JobStore::Options options;
      options.recover_in_flight = false;      // Never undo the other thread's claims.
      auto store = OpenStore(path, options);  // Separate connection per thread.
      both_open.arrive_and_wait();
      bool arrived = false;
      auto arrive_once = [&] {
        if (!arrived) both_claimed.count_down();
        arrived = true;
      };
      if (store == nullptr) return arrive_once(), errors.fetch_add(1), void();
      while (true) {
        auto claimed = store->ClaimPending("tiny", 3, absl::StrCat("w", t), 60'000);
        if (!claimed.ok()) {
          ADD_FAILURE() << claimed.status();
          errors.fetch_add(1);
          return arrive_once();
        }
        if (claimed->empty()) return arrive_once();
        for (const ClaimedRequest& request : *claimed) {
          claimed_by[t].push_back(request.key.line_number);
        }
        if (!arrived) {
          arrive_once();
          both_claimed.wait();
        }
        // Stands in for dispatching; lets the other claimer take the write lock.
        std::this_thread::sleep_for(std::chrono::microseconds(300));
      }
    });
  }
  for (auto& thread : threads) thread.join();
  ASSERT_EQ(errors.load(), 0);
  std::set<int64_t> all;
  for (const auto& lines : claimed_by) {
    for (int64_t line : lines) EXPECT_TRUE(all.insert(line).second) << "line " << line;
  }
  EXPECT_EQ(all.size(), static_cast<size_t>(kRequests));
  // Both really competed for the same rows.
  EXPECT_FALSE(claimed_by[0].empty());
  EXPECT_FALSE(claimed_by[1].empty());
}

}  // namespace
}  // namespace flatfleet::coordinator
