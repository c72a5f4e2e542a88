// Invalid input lines kept with their job as failed results, the schema upgrade that allows
// them, and results that arrive after their lease expired.
#include <atomic>
#include <string>
#include <vector>

#include "coordinator/batch_input_parser.h"
#include "coordinator/job_store.h"
#include "coordinator/sqlite_database.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/service/job_store_test_util.h"

namespace flatfleet::coordinator {
namespace {

using ::testing::HasSubstr;
using testing_util::MakeRequests;
using testing_util::Success;
using testing_util::TempDatabasePath;

std::unique_ptr<JobStore> OpenStore(const std::string& path, JobStore::Options options = {}) {
  absl::StatusOr<std::unique_ptr<JobStore>> store = JobStore::Open(path, std::move(options));
  EXPECT_TRUE(store.ok()) << store.status();
  return store.ok() ? *std::move(store) : nullptr;
}

JobOptions Options(int max_attempts = 3) {
  JobOptions options;
  options.model = "tiny";
  options.max_attempts = max_attempts;
  return options;
}

// Five lines: valid r0, invalid r1 (max_tokens), invalid without custom_id, valid r3, and a
// repeat of r0's custom_id (so its error result must not claim "r0").
ParsedBatch MixedBatch() {
  return ParseBatchInput(
      "{\"custom_id\": \"r0\", \"body\": {\"prompt\": \"a\"}}\n"
      "{\"custom_id\": \"r1\", \"body\": {\"prompt\": \"b\", \"max_tokens\": -3}}\n"
      "{\"body\": {\"prompt\": \"c\"}}\n"
      "{\"custom_id\": \"r3\", \"body\": {\"prompt\": \"d\"}}\n"
      "{\"custom_id\": \"r0\", \"body\": {\"prompt\": \"e\"}}\n");
}

TEST(JobStoreInvalidLinesTest, InvalidLinesAreFailedResultsAheadOfTheRest) {
  const std::string path = TempDatabasePath("invalid_lines");
  ParsedBatch parsed = MixedBatch();
  ASSERT_EQ(parsed.requests.size(), 2u);
  ASSERT_EQ(parsed.invalid_lines.size(), 3u);
  std::string job_id;
  {
    auto store = OpenStore(path);
    auto job = store->CreateJob(Options(), parsed.requests, parsed.invalid_lines);
    ASSERT_TRUE(job.ok()) << job.status();
    job_id = job->id;
    EXPECT_EQ(job->state, JobState::kInProgress);
    EXPECT_EQ(job->counts.total, 5);
    EXPECT_EQ(job->counts.pending, 2);
    EXPECT_EQ(job->counts.failed, 3);
    EXPECT_EQ(job->counts.invalid, 3);
    // Only the valid lines are handed out.
    auto claimed = store->ClaimPending("tiny", 10, "w", 60'000);
    ASSERT_EQ(claimed->size(), 2u);
    EXPECT_EQ((*claimed)[0].custom_id, "r0");
    EXPECT_EQ((*claimed)[1].custom_id, "r3");
    ASSERT_TRUE(store->RecordResult((*claimed)[1].key, Success("d!")).value());
  }
  auto store = OpenStore(path);  // Durable across a reopen.
  auto results = store->ReadResults(job_id, 0, 10);
  ASSERT_EQ(results->size(), 4u);
  const std::vector<int64_t> lines = {2, 3, 5, 4};
  for (size_t i = 0; i < results->size(); ++i) {
    EXPECT_EQ((*results)[i].sequence, static_cast<int64_t>(i));
    EXPECT_EQ((*results)[i].line_number, lines[i]);
  }
  for (size_t i = 0; i < 3; ++i) {
    const StoredResult& result = (*results)[i];
    EXPECT_EQ(result.outcome, ResultOutcome::kFailed);
    const nlohmann::json line = nlohmann::json::parse(result.output_line);
    EXPECT_TRUE(line["response"].is_null());
    EXPECT_EQ(line["error"]["code"], "invalid_request");
    EXPECT_EQ(line["error"]["message"].get<std::string>().rfind(
                  absl::StrCat("line ", result.line_number, ": "), 0),
              0u)
        << result.output_line;
  }
  EXPECT_EQ((*results)[0].custom_id, "r1");
  EXPECT_THAT((*results)[0].output_line, HasSubstr("\"custom_id\":\"r1\""));
  EXPECT_THAT((*results)[0].output_line, HasSubstr("line 2: body.max_tokens: "));
  EXPECT_EQ((*results)[1].custom_id, "");
  EXPECT_THAT((*results)[1].output_line, HasSubstr("\"custom_id\":null"));
  EXPECT_EQ((*results)[2].custom_id, "");
  EXPECT_THAT((*results)[2].output_line, HasSubstr("repeats the custom_id of line 1"));
  EXPECT_EQ(store->GetJob(job_id)->counts.invalid, 3);
}

TEST(JobStoreInvalidLinesTest, OnlyInvalidLinesMakeAFailedJob) {
  auto store = OpenStore(TempDatabasePath("all_invalid"));
  ParsedBatch parsed = ParseBatchInput("7\n\n{\"custom_id\": \"x\"}\n");
  ASSERT_TRUE(parsed.requests.empty());
  ASSERT_EQ(parsed.invalid_lines.size(), 2u);
  auto job = store->CreateJob(Options(), parsed.requests, parsed.invalid_lines);
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(job->state, JobState::kFailed);
  EXPECT_EQ(job->error,
            "all 2 request lines are invalid; first: line 1: must be a JSON object, got integer");
  EXPECT_EQ(job->counts.failed, 2);
  EXPECT_EQ(store->ReadResults(job->id, 0, 10)->size(), 2u);
  EXPECT_TRUE(store->ClaimPending("tiny", 10, "w", 60'000)->empty());
  // Neither requests nor invalid lines: no job.
  EXPECT_FALSE(store->CreateJob(Options(), {}, {}).ok());
}

// A file written before invalid lines were stored (schema version 0) is upgraded on open and
// keeps its jobs and results.
TEST(JobStoreInvalidLinesTest, UpgradesAVersionZeroFile) {
  const std::string path = TempDatabasePath("version0");
  {
    auto db = SqliteDatabase::Open(path);
    ASSERT_TRUE(db.ok()) << db.status();
    ASSERT_TRUE((*db)
                    ->Execute(R"sql(
CREATE TABLE jobs (
  position INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, model TEXT NOT NULL,
  state TEXT NOT NULL, options TEXT NOT NULL,
  max_attempts INTEGER NOT NULL CHECK (max_attempts >= 1),
  next_sequence INTEGER NOT NULL DEFAULT 0, created_at_ms INTEGER NOT NULL,
  updated_at_ms INTEGER NOT NULL);
CREATE TABLE requests (
  job_id TEXT NOT NULL REFERENCES jobs (id), line_number INTEGER NOT NULL,
  custom_id TEXT NOT NULL, body TEXT NOT NULL, state TEXT NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0, lease_owner TEXT, lease_expires_ms INTEGER,
  last_error TEXT, PRIMARY KEY (job_id, line_number), UNIQUE (job_id, custom_id)) WITHOUT ROWID;
CREATE INDEX requests_by_state ON requests (state, job_id, line_number);
CREATE TABLE results (
  job_id TEXT NOT NULL, sequence INTEGER NOT NULL, line_number INTEGER NOT NULL,
  outcome TEXT NOT NULL, output_line TEXT NOT NULL, PRIMARY KEY (job_id, sequence),
  UNIQUE (job_id, line_number),
  FOREIGN KEY (job_id, line_number) REFERENCES requests (job_id, line_number)) WITHOUT ROWID;
INSERT INTO jobs (id, model, state, options, max_attempts, next_sequence, created_at_ms,
                  updated_at_ms)
  VALUES ('old', 'tiny', 'in_progress', '{"max_attempts":2,"metadata":{}}', 2, 1, 5, 6);
INSERT INTO requests (job_id, line_number, custom_id, body, state)
  VALUES ('old', 1, 'a', '{"prompt":"x"}', 'succeeded'),
         ('old', 2, 'b', '{"prompt":"y"}', 'in_flight');
INSERT INTO results VALUES ('old', 0, 1, 'succeeded', '{"kept":1}');
)sql")
                    .ok());
  }
  auto store = OpenStore(path);
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->recovered_on_open(), 1);
  const JobRecord old = *store->GetJob("old");
  EXPECT_EQ(old.counts.total, 2);
  EXPECT_EQ(old.counts.completed, 1);
  EXPECT_EQ(old.counts.pending, 1);
  EXPECT_EQ(old.counts.invalid, 0);
  EXPECT_TRUE(old.error.empty());
  auto results = store->ReadResults("old", 0, 10);
  ASSERT_EQ(results->size(), 1u);
  EXPECT_EQ((*results)[0].custom_id, "a");
  EXPECT_EQ((*results)[0].output_line, "{\"kept\":1}");
  // The upgraded file takes invalid lines, and the old job runs on.
  ParsedBatch parsed = MixedBatch();
  EXPECT_TRUE(store->CreateJob(Options(), parsed.requests, parsed.invalid_lines).ok());
  auto claimed = store->ClaimPending("tiny", 1, "w", 60'000);
  ASSERT_EQ(claimed->size(), 1u);
  EXPECT_EQ((*claimed)[0].custom_id, "b");
  EXPECT_TRUE(store->RecordResult((*claimed)[0].key, Success("y!")).value());
  EXPECT_EQ(store->GetJob("old")->state, JobState::kCompleted);
  // Reopening an upgraded file changes nothing.
  store.reset();
  store = OpenStore(path);
  EXPECT_EQ(store->ReadResults("old", 0, 10)->size(), 2u);
}

// A worker that stalls past its lease: the request goes back, runs elsewhere, and the stalled
// worker's late answer is dropped, so the request has exactly one result.
TEST(JobStoreInvalidLinesTest, LateAnswerAfterAnExpiredLeaseIsDropped) {
  std::atomic<int64_t> now{2'000'000};
  JobStore::Options options;
  options.clock_ms = [&] { return now.load(); };
  auto store = OpenStore(TempDatabasePath("late_lease"), options);
  auto job = store->CreateJob(Options(/*max_attempts=*/2), MakeRequests(2));
  ASSERT_TRUE(job.ok());
  RoundRobinCursor cursor;
  auto stalled = store->ClaimPendingRoundRobin("tiny", 2, "stalled", 1'000, cursor);
  ASSERT_EQ(stalled->size(), 2u);
  now += 999;
  EXPECT_EQ(store->RequeueExpiredLeases("lease expired")->requeued, 0);  // Not yet.
  now += 1;
  RequeueReport expired = *store->RequeueExpiredLeases("lease expired");
  EXPECT_EQ(expired.requeued, 2);
  auto retry = store->ClaimPendingRoundRobin("tiny", 2, "healthy", 1'000, cursor);
  ASSERT_EQ(retry->size(), 2u);
  EXPECT_EQ((*retry)[0].attempt, 2);
  ASSERT_TRUE(store->RecordResult((*retry)[0].key, Success("healthy")).value());
  EXPECT_FALSE(store->RecordResult((*stalled)[0].key, Success("late")).value());
  // The second request's retry stalls too: out of attempts it fails, and a late answer from
  // either claim is dropped.
  now += 5'000;
  expired = *store->RequeueExpiredLeases("lease expired");
  EXPECT_EQ(expired.failed, 1);
  EXPECT_FALSE(store->RecordResult((*stalled)[1].key, Success("late")).value());
  EXPECT_FALSE(store->RecordResult((*retry)[1].key, Success("late")).value());
  auto results = store->ReadResults(job->id, 0, 10);
  ASSERT_EQ(results->size(), 2u);
  EXPECT_EQ((*results)[0].output_line, "{\"text\":\"healthy\"}");
  EXPECT_THAT((*results)[1].output_line, HasSubstr("max_attempts_exceeded"));
  EXPECT_THAT((*results)[1].output_line, HasSubstr("lease expired"));
  EXPECT_EQ(store->GetJob(job->id)->state, JobState::kCompleted);
}

}  // namespace
}  // namespace flatfleet::coordinator
