// The coordinator's metrics: the model label on per-model series, one batch's request-state
// gauges while it runs, and the batch duration histogram whose buckets reach hours.
#include "coordinator/server/coordinator_metrics.h"

#include <string>

#include "gtest/gtest.h"

namespace flatfleet::coordinator {
namespace {

bool Has(const std::string& page, const std::string& line) {
  return page.find(line + "\n") != std::string::npos;
}

TEST(CoordinatorMetricsTest, PerModelSeriesCarryTheModelLabel) {
  auto metrics = CoordinatorMetrics::Create("llama-8b");
  ASSERT_TRUE(metrics.ok()) << metrics.status();
  (*metrics)->CountRequest("succeeded", 3);
  (*metrics)->AddTokens(10, 20);
  (*metrics)->SetQueueDepth(7);
  const std::string page = (*metrics)->Expose();
  EXPECT_TRUE(
      Has(page, R"(flatfleet_coordinator_requests_total{model="llama-8b",outcome="succeeded"} 3)"))
      << page;
  EXPECT_TRUE(Has(page, R"(flatfleet_coordinator_prompt_tokens_total{model="llama-8b"} 10)"));
  EXPECT_TRUE(Has(page, R"(flatfleet_coordinator_generation_tokens_total{model="llama-8b"} 20)"));
  EXPECT_TRUE(Has(page, R"(flatfleet_coordinator_queue_depth{model="llama-8b"} 7)"));
}

TEST(CoordinatorMetricsTest, BatchGaugesWhileRunningThenItsDurationWhenItEnds) {
  auto metrics = CoordinatorMetrics::Create("demo");
  ASSERT_TRUE(metrics.ok()) << metrics.status();
  // A batch that had ended before the coordinator saw it run counts nowhere.
  (*metrics)->RecordBatch("old", /*finished=*/true, 0, 0, 5, 0, 0, 100);
  (*metrics)->RecordBatch("b1", false, 4, 2, 3, 1, 0, 0);
  std::string page = (*metrics)->Expose();
  EXPECT_TRUE(Has(
      page, R"(flatfleet_coordinator_batch_requests{model="demo",batch="b1",state="pending"} 4)"))
      << page;
  EXPECT_TRUE(
      Has(page,
          R"(flatfleet_coordinator_batch_requests{model="demo",batch="b1",state="in_flight"} 2)"));
  EXPECT_TRUE(
      Has(page,
          R"(flatfleet_coordinator_batch_requests{model="demo",batch="b1",state="completed"} 3)"));
  EXPECT_TRUE(Has(
      page, R"(flatfleet_coordinator_batch_requests{model="demo",batch="b1",state="failed"} 1)"));
  EXPECT_EQ(page.find(R"(batch="old")"), std::string::npos);
  EXPECT_TRUE(Has(page, R"(flatfleet_coordinator_batch_duration_seconds_count{model="demo"} 0)"));

  // It ends after 5000 s (1 h 23 min): its gauges go, its duration lands in the 8192 s bucket.
  (*metrics)->RecordBatch("b1", true, 0, 0, 9, 1, 0, 5000);
  page = (*metrics)->Expose();
  EXPECT_EQ(page.find(R"(batch="b1")"), std::string::npos) << page;
  EXPECT_TRUE(Has(page, R"(flatfleet_coordinator_batch_duration_seconds_count{model="demo"} 1)"));
  EXPECT_TRUE(
      Has(page, R"(flatfleet_coordinator_batch_duration_seconds_bucket{model="demo",le="4096"} 0)"))
      << page;
  EXPECT_TRUE(Has(
      page, R"(flatfleet_coordinator_batch_duration_seconds_bucket{model="demo",le="8192"} 1)"));
  // The buckets reach past a day (2^17 s).
  EXPECT_TRUE(Has(
      page, R"(flatfleet_coordinator_batch_duration_seconds_bucket{model="demo",le="131072"} 1)"));
  // Seen again (the scan lists finished jobs every time): counted once.
  (*metrics)->RecordBatch("b1", true, 0, 0, 9, 1, 0, 5000);
  EXPECT_TRUE(Has((*metrics)->Expose(),
                  R"(flatfleet_coordinator_batch_duration_seconds_count{model="demo"} 1)"));
}

}  // namespace
}  // namespace flatfleet::coordinator
