// The HTTP exposer on loopback: /metrics serves the registry, /healthz the callback's answer.
#include "worker/serving/metrics_http_server.h"

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "absl/time/time.h"
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

// A client that connects and sends half a request, then says nothing more (a slowloris).
class HalfSentRequest {
 public:
  explicit HalfSentRequest(int port) : fd_(socket(AF_INET, SOCK_STREAM, 0)) {
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(static_cast<uint16_t>(port));
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = connect(fd_, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0;
    const std::string half = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n";
    connected_ = connected_ && write(fd_, half.data(), half.size()) == ssize_t(half.size());
  }
  ~HalfSentRequest() { close(fd_); }
  bool connected() const { return connected_; }

 private:
  int fd_;
  bool connected_ = false;
};

// How long a /healthz probe takes to be answered 200.
absl::Duration TimeProbe(int port) {
  const absl::Time start = absl::Now();
  EXPECT_EQ(HttpGet(port, "/healthz").status, 200);
  return absl::Now() - start;
}

TEST(MetricsHttpServerTest, HalfSentRequestsDoNotStarveProbes) {
  metrics::MetricsRegistry registry;
  auto server = MetricsHttpServer::Start("127.0.0.1:0", registry, nullptr);
  ASSERT_TRUE(server.ok()) << server.status();
  const int port = (*server)->port();
  {
    // Fewer slow clients than threads: probes are answered at once.
    std::vector<std::unique_ptr<HalfSentRequest>> slow;
    for (int i = 0; i < MetricsHttpServer::kThreads / 2; ++i) {
      slow.push_back(std::make_unique<HalfSentRequest>(port));
      ASSERT_TRUE(slow.back()->connected());
    }
    absl::SleepFor(absl::Milliseconds(100));  // Let the server take them.
    EXPECT_LT(TimeProbe(port), absl::Milliseconds(500));
  }
  {
    // More slow clients than threads: they are dropped after the request timeout, so a probe
    // waits at most about that long (a Kubernetes probe's default timeout is 1 s, its period
    // 10 s: it would see one slow answer, not a failed liveness check in a row).
    std::vector<std::unique_ptr<HalfSentRequest>> slow;
    for (int i = 0; i < 2 * MetricsHttpServer::kThreads; ++i) {
      slow.push_back(std::make_unique<HalfSentRequest>(port));
      ASSERT_TRUE(slow.back()->connected());
    }
    absl::SleepFor(absl::Milliseconds(100));
    EXPECT_LT(TimeProbe(port), absl::Milliseconds(2 * MetricsHttpServer::kRequestTimeoutMs + 500));
  }
}

TEST(MetricsHttpServerTest, ReadyzAnswersFromItsOwnCallback) {
  metrics::MetricsRegistry registry;
  std::atomic<bool> ready{false};
  auto server = MetricsHttpServer::Start(
      "127.0.0.1:0", registry,
      [] {
        return HealthzReply{true, "alive\n"};
      },
      [&] {
        return HealthzReply{ready.load(), ready.load() ? "ready\n" : "store full\n"};
      });
  ASSERT_TRUE(server.ok()) << server.status();
  EXPECT_EQ(HttpGet((*server)->port(), "/healthz").status, 200);
  testing::HttpReply readiness = HttpGet((*server)->port(), "/readyz");
  EXPECT_EQ(readiness.status, 503);
  EXPECT_EQ(readiness.body, "store full\n");
  ready = true;
  EXPECT_EQ(HttpGet((*server)->port(), "/readyz").status, 200);
}

}  // namespace
}  // namespace flatfleet::engine
