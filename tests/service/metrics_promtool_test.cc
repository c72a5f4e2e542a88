// Checks the exposition with Prometheus's own linter, promtool, when it is installed.
#include <string>

#include "common/metrics/metrics_registry.h"
#include "gtest/gtest.h"
#include "tests/support/promtool.h"

namespace flatfleet::metrics {
namespace {

class PromtoolTest : public testing::Test {
 protected:
  void SetUp() override {
    if (!flatfleet::test_support::HasPromtool()) GTEST_SKIP() << "promtool is not installed";
  }
};

std::string SmallPage() {
  MetricsRegistry registry;
  auto requests = registry.AddCounter("ff_requests_total", "Requests \"served\".\nBy model.",
                                      {"model", "outcome"});
  (*(*requests)->WithLabels({"tiny\\llama \"7b\"", "ok"}))->Increment(41);
  (*(*requests)->WithLabels({"line\nbreak", "error"}))->Increment();
  auto queue = registry.AddGauge("ff_queue_depth", "Pending requests.");
  (*(*queue)->WithLabels({}))->Set(7);
  auto latency = registry.AddHistogram("ff_request_duration_seconds", "Request latency.",
                                       ExponentialBuckets(0.01, 4, 5), {"model"});
  for (double v : {0.003, 0.2, 0.2, 3.0, 100.0}) (*(*latency)->WithLabels({"tiny"}))->Observe(v);
  registry.AddHistogram("ff_empty_seconds", "A histogram with no children yet.", {1}, {"op"})
      .IgnoreError();
  return registry.Expose();
}

TEST_F(PromtoolTest, AcceptsRegistryOutput) {
  std::string output;
  EXPECT_EQ(flatfleet::test_support::PromtoolCheckMetrics(SmallPage(), &output), 0) << output;
}

TEST_F(PromtoolTest, RejectsBrokenPage) {
  // The same page with an unterminated label value: the checker must not be a rubber stamp.
  std::string page = SmallPage();
  const std::string::size_type quote = page.find("outcome=\"ok\"");
  ASSERT_NE(quote, std::string::npos);
  page.erase(quote + std::string("outcome=\"ok").size(), 1);
  std::string output;
  EXPECT_NE(flatfleet::test_support::PromtoolCheckMetrics(page, &output), 0) << output;
}

}  // namespace
}  // namespace flatfleet::metrics
