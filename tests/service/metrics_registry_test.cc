#include "common/metrics/metrics_registry.h"

#include <cmath>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace flatfleet::metrics {
namespace {

using ::testing::HasSubstr;

TEST(MetricsRegistryTest, ExposesExactTextFormat) {
  MetricsRegistry registry;
  auto requests = registry.AddCounter("ff_requests_total", "Requests served.", {"model", "code"});
  ASSERT_TRUE(requests.ok()) << requests.status();
  (*(*requests)->WithLabels({"llama", "ok"}))->Increment(3);
  (*(*requests)->WithLabels({"a\"b\\c\nd", "error"}))->Increment();

  auto in_flight = registry.AddGauge("ff_in_flight", "Requests running now.\nPer worker \\ rank.");
  ASSERT_TRUE(in_flight.ok()) << in_flight.status();
  Gauge* gauge = *(*in_flight)->WithLabels({});
  gauge->Set(5);
  gauge->Decrement(1.5);

  auto latency = registry.AddHistogram("ff_latency_seconds", "Latency.", {0.1, 0.5, 2}, {"op"});
  ASSERT_TRUE(latency.ok()) << latency.status();
  Histogram* claim = *(*latency)->WithLabels({"claim"});
  claim->Observe(0.05);
  claim->Observe(0.1);  // On a bound: counts in that bucket ("le").
  claim->Observe(1);
  claim->Observe(10);

  EXPECT_EQ(registry.Expose(),
            "# HELP ff_in_flight Requests running now.\\nPer worker \\\\ rank.\n"
            "# TYPE ff_in_flight gauge\n"
            "ff_in_flight 3.5\n"
            "# HELP ff_latency_seconds Latency.\n"
            "# TYPE ff_latency_seconds histogram\n"
            "ff_latency_seconds_bucket{op=\"claim\",le=\"0.1\"} 2\n"
            "ff_latency_seconds_bucket{op=\"claim\",le=\"0.5\"} 2\n"
            "ff_latency_seconds_bucket{op=\"claim\",le=\"2\"} 3\n"
            "ff_latency_seconds_bucket{op=\"claim\",le=\"+Inf\"} 4\n"
            "ff_latency_seconds_sum{op=\"claim\"} 11.15\n"
            "ff_latency_seconds_count{op=\"claim\"} 4\n"
            "# HELP ff_requests_total Requests served.\n"
            "# TYPE ff_requests_total counter\n"
            "ff_requests_total{model=\"a\\\"b\\\\c\\nd\",code=\"error\"} 1\n"
            "ff_requests_total{model=\"llama\",code=\"ok\"} 3\n");
}

TEST(MetricsRegistryTest, UnlabelledFamilyIsExposedBeforeFirstUpdate) {
  MetricsRegistry registry;
  ASSERT_TRUE(registry.AddCounter("ff_started_total", "Starts.").ok());
  EXPECT_THAT(registry.Expose(), HasSubstr("\nff_started_total 0\n"));
}

TEST(MetricsRegistryTest, SpecialValuesUseTextFormatSpelling) {
  MetricsRegistry registry;
  auto family = registry.AddGauge("ff_odd", "Odd values.", {"kind"});
  ASSERT_TRUE(family.ok());
  (*(*family)->WithLabels({"pinf"}))->Set(INFINITY);
  (*(*family)->WithLabels({"ninf"}))->Set(-INFINITY);
  (*(*family)->WithLabels({"nan"}))->Set(NAN);
  (*(*family)->WithLabels({"big"}))->Set(1e21);
  const std::string page = registry.Expose();
  EXPECT_THAT(page, HasSubstr("ff_odd{kind=\"pinf\"} +Inf\n"));
  EXPECT_THAT(page, HasSubstr("ff_odd{kind=\"ninf\"} -Inf\n"));
  EXPECT_THAT(page, HasSubstr("ff_odd{kind=\"nan\"} NaN\n"));
  EXPECT_THAT(page, HasSubstr("ff_odd{kind=\"big\"} 1e+21\n"));
}

TEST(MetricsRegistryTest, RejectsBadNames) {
  MetricsRegistry registry;
  EXPECT_THAT(registry.AddGauge("1abc", "x").status().message(), HasSubstr("invalid character"));
  EXPECT_THAT(registry.AddGauge("a-b", "x").status().message(), HasSubstr("position 1"));
  EXPECT_FALSE(registry.AddGauge("", "x").ok());
  EXPECT_TRUE(registry.AddGauge("ns:sub_metric", "colons are allowed in metric names").ok());
  EXPECT_THAT(registry.AddGauge("g1", "x", {"__name"}).status().message(), HasSubstr("reserves"));
  EXPECT_THAT(registry.AddGauge("g2", "x", {"a:b"}).status().message(),
              HasSubstr("invalid character"));
  EXPECT_THAT(registry.AddGauge("g3", "x", {"a", "a"}).status().message(),
              HasSubstr("repeats label name"));
  EXPECT_THAT(registry.AddCounter("requests", "x").status().message(), HasSubstr("_total"));
  EXPECT_THAT(registry.AddHistogram("h", "x", {1}, {"le"}).status().message(),
              HasSubstr("reserved"));
  EXPECT_THAT(registry.AddHistogram("h", "x", {2, 1}).status().message(),
              HasSubstr("strictly increase"));
  EXPECT_THAT(registry.AddHistogram("h", "x", {1, NAN}).status().message(),
              HasSubstr("not finite"));
  // A failed registration reserves nothing.
  EXPECT_TRUE(registry.AddHistogram("h", "x", {1, 2, INFINITY}).ok());
}

TEST(MetricsRegistryTest, RejectsCollidingNames) {
  MetricsRegistry registry;
  ASSERT_TRUE(registry.AddHistogram("ff_wait", "x", {1}).ok());
  EXPECT_EQ(registry.AddGauge("ff_wait", "x").status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(registry.AddGauge("ff_wait_count", "x").status().code(),
            absl::StatusCode::kAlreadyExists);
  ASSERT_TRUE(registry.AddGauge("ff_other_sum", "x").ok());
  EXPECT_EQ(registry.AddHistogram("ff_other", "x", {1}).status().code(),
            absl::StatusCode::kAlreadyExists);
}

TEST(MetricsRegistryTest, WrongLabelCountIsAnError) {
  MetricsRegistry registry;
  auto family = registry.AddCounter("ff_x_total", "x", {"a", "b"});
  ASSERT_TRUE(family.ok());
  EXPECT_THAT((*family)->WithLabels({"only-one"}).status().message(),
              HasSubstr("got 1 label values"));
}

TEST(MetricsRegistryTest, CounterIgnoresNegativeIncrements) {
  Counter counter;
  counter.Increment(2);
  counter.Increment(-1);
  counter.Increment(NAN);
  EXPECT_EQ(counter.Value(), 2);
}

TEST(MetricsRegistryTest, ConcurrentUpdatesAreNotLost) {
  MetricsRegistry registry;
  auto counters = registry.AddCounter("ff_events_total", "x", {"thread"});
  auto histograms = registry.AddHistogram("ff_sizes", "x", {10, 100});
  ASSERT_TRUE(counters.ok() && histograms.ok());
  constexpr int kThreads = 4;
  constexpr int kPerThread = 20000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        // Every thread shares one child and looks it up each time: exercises the lookup lock.
        (*(*counters)->WithLabels({"shared"}))->Increment();
        (*(*histograms)->WithLabels({}))->Observe(i % 200);
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ((*(*counters)->WithLabels({"shared"}))->Value(), kThreads * kPerThread);
  const HistogramSnapshot snapshot = (*(*histograms)->WithLabels({}))->Snapshot();
  EXPECT_EQ(snapshot.count, kThreads * kPerThread);
  EXPECT_EQ(snapshot.cumulative_counts[0], kThreads * kPerThread * 11 / 200);   // 0..10
  EXPECT_EQ(snapshot.cumulative_counts[1], kThreads * kPerThread * 101 / 200);  // 0..100
}

}  // namespace
}  // namespace flatfleet::metrics
