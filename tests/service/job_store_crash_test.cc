// Crash safety of the job store: a child process writes and dies (at a chosen point inside a
// transaction, or by SIGKILL at an arbitrary moment); the parent reopens the database and
// checks that nothing is partial, lost or duplicated.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <set>
#include <thread>

#include "coordinator/job_store.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/service/job_store_test_util.h"

namespace flatfleet::coordinator {
namespace {

using testing_util::MakeRequests;
using testing_util::Success;
using testing_util::TempDatabasePath;

constexpr int kCrashExitCode = 42;

// Runs `body` in a child process that dies with _exit (no destructors, no flush) when the store
// reaches `crash_point`; returns the child's exit code.
int RunChild(const std::string& crash_point, const std::function<void(JobStore::Options)>& body) {
  const pid_t pid = fork();
  if (pid == 0) {
    JobStore::Options options;
    options.recover_in_flight = false;  // The parent's in-flight requests stay in flight.
    options.fault_hook = [crash_point](std::string_view point) {
      if (point == crash_point) _exit(kCrashExitCode);
    };
    body(options);
    _exit(0);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

std::unique_ptr<JobStore> Reopen(const std::string& path) {
  absl::StatusOr<std::unique_ptr<JobStore>> store = JobStore::Open(path);
  EXPECT_TRUE(store.ok()) << store.status();
  return store.ok() ? *std::move(store) : nullptr;
}

JobOptions TinyModel() {
  JobOptions options;
  options.model = "tiny";
  return options;
}

// Checks the invariants that must hold after any crash: one result per finished request,
// dense sequence numbers, and counts that add up.
void ExpectConsistent(JobStore& store, const std::string& job_id, int64_t total) {
  const JobRecord job = *store.GetJob(job_id);
  EXPECT_EQ(job.counts.total, total);
  EXPECT_EQ(job.counts.pending + job.counts.in_flight + job.counts.completed + job.counts.failed +
                job.counts.cancelled,
            total);
  EXPECT_EQ(job.counts.in_flight, 0);  // Reopening recovers them.
  auto results = store.ReadResults(job_id, 0, static_cast<int>(total) + 10);
  ASSERT_TRUE(results.ok()) << results.status();
  EXPECT_EQ(static_cast<int64_t>(results->size()), job.counts.completed + job.counts.failed);
  std::set<int64_t> lines;
  for (size_t i = 0; i < results->size(); ++i) {
    EXPECT_EQ((*results)[i].sequence, static_cast<int64_t>(i));
    EXPECT_TRUE(lines.insert((*results)[i].line_number).second)
        << "duplicate result for line " << (*results)[i].line_number;
  }
}

TEST(JobStoreCrashTest, CrashInsideCreateLeavesNoPartialJob) {
  const std::string path = TempDatabasePath("crash_create");
  { ASSERT_NE(Reopen(path), nullptr); }  // Schema exists before the child starts.
  const int exit_code = RunChild("create_job.requests_inserted", [&](JobStore::Options options) {
    auto store = JobStore::Open(path, options);
    if (!store.ok()) _exit(1);
    (*store)->CreateJob(TinyModel(), MakeRequests(500)).IgnoreError();
  });
  ASSERT_EQ(exit_code, kCrashExitCode);
  auto store = Reopen(path);
  EXPECT_TRUE(store->ListJobs(10)->empty());
  EXPECT_TRUE(store->ClaimPending("tiny", 10, "w", 1000)->empty());
}

TEST(JobStoreCrashTest, CrashInsideRecordResultLosesNothingAndDuplicatesNothing) {
  const std::string path = TempDatabasePath("crash_record");
  std::string job_id;
  {
    auto store = Reopen(path);
    job_id = store->CreateJob(TinyModel(), MakeRequests(3))->id;
    auto claimed = store->ClaimPending("tiny", 3, "w1", 60'000);
    ASSERT_EQ(claimed->size(), 3u);
    ASSERT_TRUE(store->RecordResult((*claimed)[0].key, Success("a")).value());
  }
  const int exit_code = RunChild("record_result.result_inserted", [&](JobStore::Options options) {
    auto store = JobStore::Open(path, options);
    if (!store.ok()) _exit(1);
    (*store)->RecordResult({job_id, 2}, Success("b")).IgnoreError();
  });
  ASSERT_EQ(exit_code, kCrashExitCode);

  auto store = Reopen(path);
  EXPECT_EQ(store->recovered_on_open(), 2);  // Lines 2 and 3 were still in flight.
  ExpectConsistent(*store, job_id, 3);
  EXPECT_EQ(store->ReadResults(job_id, 0, 10)->size(), 1u);  // The torn result is gone...
  // ...and recording it again (the retry) stores it once.
  auto retried = store->ClaimPending("tiny", 5, "w2", 60'000);
  ASSERT_EQ(retried->size(), 2u);
  for (const ClaimedRequest& request : *retried) {
    EXPECT_TRUE(store->RecordResult(request.key, Success("retry")).value());
    EXPECT_FALSE(store->RecordResult(request.key, Success("retry")).value());
  }
  ExpectConsistent(*store, job_id, 3);
  EXPECT_EQ(store->GetJob(job_id)->state, JobState::kCompleted);
}

TEST(JobStoreCrashTest, KillNineAtAnyMomentKeepsTheStoreConsistent) {
  const std::string path = TempDatabasePath("crash_kill");
  constexpr int kRequests = 600;
  std::string job_id;
  {
    auto store = Reopen(path);
    job_id = store->CreateJob(TinyModel(), MakeRequests(kRequests))->id;
  }
  const pid_t pid = fork();
  if (pid == 0) {
    // Claims and answers as fast as it can until killed; past half the job it pauses 2 ms
    // between claims, so the rest takes >= 0.2 s and the kill still lands mid-stream when the
    // parent is scheduled late (on a loaded machine the child could otherwise finish first).
    auto store = JobStore::Open(path);
    if (!store.ok()) _exit(1);
    int answered = 0;
    while (true) {
      auto claimed = (*store)->ClaimPending("tiny", 3, "child", 60'000);
      if (!claimed.ok() || claimed->empty()) _exit(2);
      for (const ClaimedRequest& request : *claimed) {
        if (!(*store)->RecordResult(request.key, Success(request.custom_id)).ok()) _exit(3);
        ++answered;
      }
      if (answered > kRequests / 2) std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  }
  // Kill only once some results exist, so the kill lands mid-stream.
  {
    auto watcher = Reopen(path);
    for (int i = 0; i < 2000 && watcher->ReadResults(job_id, 0, 5)->size() < 5; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(30));
  kill(pid, SIGKILL);
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFSIGNALED(status)) << "the child finished before it was killed";

  auto store = Reopen(path);
  ExpectConsistent(*store, job_id, kRequests);
  const JobRecord after_crash = *store->GetJob(job_id);
  EXPECT_GT(after_crash.counts.completed, 0);
  EXPECT_LT(after_crash.counts.completed, kRequests);

  // Finish the job, answering every request twice: each still ends with exactly one result.
  while (true) {
    auto claimed = store->ClaimPending("tiny", 500, "w2", 60'000);
    ASSERT_TRUE(claimed.ok());
    if (claimed->empty()) break;
    for (const ClaimedRequest& request : *claimed) {
      ASSERT_TRUE(store->RecordResult(request.key, Success(request.custom_id)).ok());
    }
  }
  for (int line = 1; line <= kRequests; ++line) {
    EXPECT_FALSE(store->RecordResult({job_id, line}, Success("duplicate")).value());
  }
  ExpectConsistent(*store, job_id, kRequests);
  const JobRecord done = *store->GetJob(job_id);
  EXPECT_EQ(done.state, JobState::kCompleted);
  EXPECT_EQ(done.counts.completed, kRequests);
  auto results = store->ReadResults(job_id, 0, kRequests + 10);
  for (const StoredResult& result : *results) {
    EXPECT_EQ(result.output_line, "{\"text\":\"" + result.custom_id + "\"}");
  }
}

}  // namespace
}  // namespace flatfleet::coordinator
