// The worker's KV-cache usage ratio beside its block counts, and the request phase histograms.
#include "worker/serving/worker_metrics.h"

#include <string>

#include "gtest/gtest.h"

namespace flatfleet::engine {
namespace {

bool Has(const std::string& page, const std::string& line) {
  return page.find(line + "\n") != std::string::npos;
}

TEST(WorkerMetricsTest, KvCacheUsageRatioIsUsedOverTotal) {
  auto metrics = WorkerMetrics::Create();
  ASSERT_TRUE(metrics.ok()) << metrics.status();
  EngineStats stats;
  stats.kv_cache_used_blocks = 3;
  stats.kv_cache_total_blocks = 12;
  (*metrics)->RecordEngineStats(stats);
  std::string page = (*metrics)->registry().Expose();
  EXPECT_TRUE(Has(page, "flatfleet_worker_kv_cache_used_blocks 3")) << page;
  EXPECT_TRUE(Has(page, "flatfleet_worker_kv_cache_total_blocks 12"));
  EXPECT_TRUE(Has(page, "flatfleet_worker_kv_cache_usage_ratio 0.25"));
  // No pool (a worker before LoadShard): 0, not a division by zero.
  (*metrics)->RecordEngineStats(EngineStats{});
  EXPECT_TRUE(Has((*metrics)->registry().Expose(), "flatfleet_worker_kv_cache_usage_ratio 0"));
}

TEST(WorkerMetricsTest, RequestPhasesGoToTheirHistograms) {
  auto metrics = WorkerMetrics::Create();
  ASSERT_TRUE(metrics.ok()) << metrics.status();
  EngineResult result;
  result.result.completion_tokens = 4;
  result.time_to_first_token_seconds = 0.75;
  result.total_seconds = 2.0;
  result.queue_seconds = 0.5;
  result.prefill_seconds = 0.25;
  result.decode_seconds = 1.25;
  (*metrics)->RecordResult(result);
  const std::string page = (*metrics)->registry().Expose();
  EXPECT_TRUE(Has(page, "flatfleet_worker_request_queue_time_seconds_sum 0.5")) << page;
  EXPECT_TRUE(Has(page, "flatfleet_worker_request_queue_time_seconds_count 1"));
  EXPECT_TRUE(Has(page, "flatfleet_worker_request_prefill_time_seconds_sum 0.25"));
  EXPECT_TRUE(Has(page, "flatfleet_worker_request_decode_time_seconds_sum 1.25"));
}

}  // namespace
}  // namespace flatfleet::engine
