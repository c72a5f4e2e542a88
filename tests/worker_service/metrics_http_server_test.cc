// The HTTP exposer on loopback: /metrics serves the registry, /healthz the callback's answer.
#include "worker/serving/metrics_http_server.h"

#include <atomic>

#include "gtest/gtest.h"
#include "http_get.h"

namespace flatfleet::engine {
namespace {

using testing::HttpGet;
using testing::HttpRequest;

TEST(MetricsHttpServerTest, ServesMetricsAndHealthOnAChosenPort) {
  metrics::MetricsRegistry registry;
  auto requests = registry.AddCounter("test_requests_total", "Requests.").value();
  (*requests->WithLabels({}))->Increment(3);
  std::atomic<bool> healthy{true};
  auto server = MetricsHttpServer::Start("127.0.0.1:0", registry, [&] {
    return HealthzReply{healthy.load(), healthy.load() ? "fine\n" : "broken\n"};
  });
  ASSERT_TRUE(server.ok()) << server.status();
  ASSERT_GT((*server)->port(), 0);

  testing::HttpReply metrics_page = HttpGet((*server)->port(), "/metrics");
  EXPECT_EQ(metrics_page.status, 200);
  EXPECT_NE(metrics_page.headers.find("Content-Type: text/plain; version=0.0.4"), std::string::npos)
      << metrics_page.headers;
  EXPECT_EQ(metrics_page.body, registry.Expose());
  EXPECT_NE(metrics_page.body.find("test_requests_total 3"), std::string::npos);

  testing::HttpReply health = HttpGet((*server)->port(), "/healthz");
  EXPECT_EQ(health.status, 200);
  EXPECT_EQ(health.body, "fine\n");
  healthy = false;
  health = HttpGet((*server)->port(), "/healthz");
  EXPECT_EQ(health.status, 503);
  EXPECT_EQ(health.body, "broken\n");

  EXPECT_EQ(HttpRequest((*server)->port(), "POST", "/metrics").status, 405);
  EXPECT_EQ(HttpGet((*server)->port(), "/metrics/extra").status, 404);
  EXPECT_EQ(HttpGet((*server)->port(), "/nothing").status, 404);
}

TEST(MetricsHttpServerTest, TwoServersGetDistinctPortsAndATakenPortFails) {
  metrics::MetricsRegistry registry;
  auto first = MetricsHttpServer::Start("127.0.0.1:0", registry, nullptr);
  auto second = MetricsHttpServer::Start("127.0.0.1:0", registry, nullptr);
  ASSERT_TRUE(first.ok() && second.ok());
  EXPECT_NE((*first)->port(), (*second)->port());
  EXPECT_EQ(HttpGet((*first)->port(), "/healthz").status, 200);

  const std::string taken = "127.0.0.1:" + std::to_string((*first)->port());
  auto clash = MetricsHttpServer::Start(taken, registry, nullptr);
  ASSERT_FALSE(clash.ok());
  EXPECT_NE(clash.status().message().find(taken), std::string::npos) << clash.status();
}

}  // namespace
}  // namespace flatfleet::engine
