// JobStore::ClaimPendingRoundRobin and ReleaseInFlight, which the scheduler relies on.
#include <string>
#include <vector>

#include "coordinator/batch_input_parser.h"
#include "coordinator/job_store.h"
#include "gtest/gtest.h"
#include "tests/coordinator/coordinator_test_util.h"

namespace flatfleet::coordinator {
namespace {

std::vector<BatchRequestLine> Requests(int count) {
  std::string text;
  for (const std::string& line : testing_util::CompletionLines(count)) text += line + "\n";
  ParsedBatch parsed = ParseBatchInput(text);
  EXPECT_TRUE(parsed.ok());
  return std::move(parsed.requests);
}

TEST(RoundRobinClaimTest, ClaimsAlternateBetweenJobsAndContinueWhereTheyLeftOff) {
  auto store = JobStore::Open(testing_util::FreshDatabasePath("round_robin"));
  ASSERT_TRUE(store.ok()) << store.status();
  JobOptions options;
  options.model = "demo";
  auto big = (*store)->CreateJob(options, Requests(10));
  auto small = (*store)->CreateJob(options, Requests(2));
  ASSERT_TRUE(big.ok() && small.ok());
  RoundRobinCursor cursor;
  auto first = (*store)->ClaimPendingRoundRobin("demo", 3, "w", 60'000, cursor);
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_EQ(first->size(), 3u);
  EXPECT_EQ((*first)[0].key, (RequestKey{big->id, 1}));
  EXPECT_EQ((*first)[1].key, (RequestKey{small->id, 1}));
  EXPECT_EQ((*first)[2].key, (RequestKey{big->id, 2}));
  // The big job was served last, so the small one comes first now.
  auto second = (*store)->ClaimPendingRoundRobin("demo", 2, "w", 60'000, cursor);
  ASSERT_TRUE(second.ok());
  ASSERT_EQ(second->size(), 2u);
  EXPECT_EQ((*second)[0].key, (RequestKey{small->id, 2}));
  EXPECT_EQ((*second)[1].key, (RequestKey{big->id, 3}));
  auto other_model = (*store)->ClaimPendingRoundRobin("other", 5, "w", 60'000, cursor);
  ASSERT_TRUE(other_model.ok());
  EXPECT_TRUE(other_model->empty());
}

TEST(RoundRobinClaimTest, ReleasedRequestGoesBackWithoutSpendingAnAttempt) {
  auto store = JobStore::Open(testing_util::FreshDatabasePath("release"));
  ASSERT_TRUE(store.ok());
  JobOptions options;
  options.model = "demo";
  options.max_attempts = 1;
  auto job = (*store)->CreateJob(options, Requests(1));
  ASSERT_TRUE(job.ok());
  RoundRobinCursor cursor;
  for (int round = 0; round < 3; ++round) {
    auto claimed = (*store)->ClaimPendingRoundRobin("demo", 1, "w", 60'000, cursor);
    ASSERT_TRUE(claimed.ok());
    ASSERT_EQ(claimed->size(), 1u) << "round " << round;
    EXPECT_EQ((*claimed)[0].attempt, 1);
    auto released = (*store)->ReleaseInFlight((*claimed)[0].key, "cancelled by worker");
    ASSERT_TRUE(released.ok());
    EXPECT_TRUE(*released);
  }
  auto again = (*store)->ReleaseInFlight(RequestKey{job->id, 1}, "not in flight");
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(*again);
  // Released while the job is cancelling: cancelled, and the job with it.
  auto claimed = (*store)->ClaimPendingRoundRobin("demo", 1, "w", 60'000, cursor);
  ASSERT_TRUE(claimed.ok() && claimed->size() == 1);
  auto cancel = (*store)->CancelJob(job->id);
  ASSERT_TRUE(cancel.ok());
  EXPECT_EQ(cancel->job.state, JobState::kCancelling);
  ASSERT_TRUE((*store)->ReleaseInFlight((*claimed)[0].key, "cancelled").ok());
  auto after = (*store)->GetJob(job->id);
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after->state, JobState::kCancelled);
  EXPECT_EQ(after->counts.cancelled, 1);
}

}  // namespace
}  // namespace flatfleet::coordinator
