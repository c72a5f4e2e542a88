// CreateJob with an idempotency key: a retry returns the job the first call created (which a
// client whose connection broke cannot know exists), never a second one.
#include <string>

#include "absl/strings/match.h"
#include "coordinator/job_store.h"
#include "gtest/gtest.h"
#include "tests/service/job_store_test_util.h"

namespace flatfleet::coordinator {
namespace {

using testing_util::MakeRequests;
using testing_util::TempDatabasePath;

JobOptions Keyed(const std::string& model, const std::string& key) {
  JobOptions options;
  options.model = model;
  options.idempotency_key = key;
  return options;
}

TEST(JobStoreIdempotencyTest, ARetryWithTheSameKeyReturnsTheFirstJob) {
  const std::string path = TempDatabasePath("idempotent");
  {
    auto store = JobStore::Open(path);
    ASSERT_TRUE(store.ok()) << store.status();
    auto first = (*store)->CreateJob(Keyed("tiny", "upload-7"), MakeRequests(5));
    ASSERT_TRUE(first.ok()) << first.status();
    auto retry = (*store)->CreateJob(Keyed("tiny", "upload-7"), MakeRequests(5));
    ASSERT_TRUE(retry.ok()) << retry.status();
    EXPECT_EQ(retry->id, first->id);
    EXPECT_EQ(retry->counts.total, 5);
    // Without a key, or with another, each call creates a job.
    EXPECT_NE((*store)->CreateJob(Keyed("tiny", ""), MakeRequests(1))->id, first->id);
    EXPECT_NE((*store)->CreateJob(Keyed("tiny", ""), MakeRequests(1))->id, first->id);
    EXPECT_NE((*store)->CreateJob(Keyed("tiny", "upload-8"), MakeRequests(1))->id, first->id);
    EXPECT_EQ((*store)->ListJobs(10)->size(), 4u);
    // The key belongs to a job of another model: refused, naming that job.
    auto other_model = (*store)->CreateJob(Keyed("big", "upload-7"), MakeRequests(1));
    EXPECT_EQ(other_model.status().code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_TRUE(absl::StrContains(other_model.status().message(), first->id));
  }
  // Keys are durable: a restarted coordinator still knows them.
  auto reopened = JobStore::Open(path);
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  auto after_restart = (*reopened)->CreateJob(Keyed("tiny", "upload-7"), MakeRequests(5));
  ASSERT_TRUE(after_restart.ok());
  EXPECT_EQ((*reopened)->ListJobs(10)->size(), 4u);
}

}  // namespace
}  // namespace flatfleet::coordinator
