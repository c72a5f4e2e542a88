// The engine thread: results reach the submitter's callback exactly once, submit errors too,
// cancellations are forwarded, and destruction cancels what is left.
#include "worker/serving/engine_driver.h"

#include <atomic>
#include <map>

#include "absl/synchronization/notification.h"
#include "fake_engine.h"
#include "gtest/gtest.h"

namespace flatfleet::engine {
namespace {

using testing::FakeEngine;
using testing::FakeEngineControl;

struct Collected {
  absl::Mutex mutex;
  std::map<std::string, absl::Status> statuses;
  void Add(const EngineResult& result) {
    absl::MutexLock lock(&mutex);
    EXPECT_TRUE(statuses.emplace(result.id, result.status).second) << "twice: " << result.id;
  }
  size_t size() {
    absl::MutexLock lock(&mutex);
    return statuses.size();
  }
};

EngineRequest Request(const std::string& id) {
  EngineRequest request;
  request.id = id;
  request.prompt = {1, 2, 3};
  return request;
}

TEST(EngineDriverTest, DeliversResultsCancelsAndReportsSubmitErrors) {
  auto control = std::make_shared<FakeEngineControl>();
  Collected collected;
  std::atomic<int> steps{0};
  {
    EngineDriver driver(std::make_unique<FakeEngine>(control),
                        [&](const EngineStats&) { steps.fetch_add(1); });
    auto collect = [&](EngineResult result) { collected.Add(result); };
    driver.Submit(Request("a"), collect);
    driver.Submit(Request("b"), collect);
    ASSERT_TRUE(control->WaitForSubmitted(2));
    driver.Cancel("b");
    ASSERT_TRUE(control->WaitForCancelled(1));
    control->ReleaseAll();
    ASSERT_TRUE(driver.WaitUntilNothingOutstanding(absl::Seconds(10)));
    EXPECT_EQ(driver.Outstanding(), 0);
  }
  ASSERT_EQ(collected.size(), 2u);
  EXPECT_TRUE(collected.statuses["a"].ok());
  EXPECT_EQ(collected.statuses["b"].code(), absl::StatusCode::kCancelled);
  EXPECT_GT(steps.load(), 0);
}

TEST(EngineDriverTest, DuplicateIdIsRejectedThroughItsCallback) {
  auto control = std::make_shared<FakeEngineControl>();
  EngineDriver driver(std::make_unique<FakeEngine>(control));
  absl::Notification first_done;
  absl::Status duplicate_status;
  absl::Notification duplicate_done;
  driver.Submit(Request("x"), [&](EngineResult) { first_done.Notify(); });
  driver.Submit(Request("x"), [&](EngineResult result) {
    duplicate_status = result.status;
    duplicate_done.Notify();
  });
  ASSERT_TRUE(duplicate_done.WaitForNotificationWithTimeout(absl::Seconds(10)));
  EXPECT_EQ(duplicate_status.code(), absl::StatusCode::kAlreadyExists);
  EXPECT_FALSE(first_done.HasBeenNotified());
  control->ReleaseAll();
  ASSERT_TRUE(first_done.WaitForNotificationWithTimeout(absl::Seconds(10)));
}

TEST(EngineDriverTest, DestructionCancelsOutstandingRequests) {
  auto control = std::make_shared<FakeEngineControl>();
  Collected collected;
  {
    EngineDriver driver(std::make_unique<FakeEngine>(control));
    for (const char* id : {"p", "q"}) {
      driver.Submit(Request(id), [&](EngineResult result) { collected.Add(result); });
    }
    ASSERT_TRUE(control->WaitForSubmitted(2));
  }
  ASSERT_EQ(collected.size(), 2u);
  for (const auto& [id, status] : collected.statuses) {
    EXPECT_EQ(status.code(), absl::StatusCode::kCancelled) << id;
  }
}

}  // namespace
}  // namespace flatfleet::engine
