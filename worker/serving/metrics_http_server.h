// A small HTTP server (civetweb) for scrapers and probes: GET /metrics serves a registry's text
// exposition, GET /healthz a liveness answer and GET /readyz a readiness answer, each from a
// callback. Slow or half-sent requests cannot starve probes for long: several threads serve,
// and a request that does not arrive within a short timeout is dropped.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "common/metrics/metrics_registry.h"

struct mg_context;
struct mg_connection;

namespace flatfleet::engine {

struct HealthzReply {
  bool healthy = true;  // 200 when healthy, else 503
  std::string body;
};

class MetricsHttpServer {
 public:
  using HealthzHandler = std::function<HealthzReply()>;

  // Listens on `address` ("host:port"; port 0 picks a free one). `registry` must outlive the
  // server; `healthz` and `readyz` may be null (always healthy; ready as healthz says).
  static absl::StatusOr<std::unique_ptr<MetricsHttpServer>> Start(
      const std::string& address, const metrics::MetricsRegistry& registry, HealthzHandler healthz,
      HealthzHandler readyz = nullptr);

  // Threads serving requests, and how long one may take to arrive (or to be written).
  static constexpr int kThreads = 16;
  static constexpr int kRequestTimeoutMs = 2000;
  // Stops listening and waits for requests in progress.
  ~MetricsHttpServer();

  MetricsHttpServer(const MetricsHttpServer&) = delete;
  MetricsHttpServer& operator=(const MetricsHttpServer&) = delete;

  // The bound port (the chosen one when started with port 0).
  int port() const { return port_; }

 private:
  MetricsHttpServer(const metrics::MetricsRegistry& registry, HealthzHandler healthz,
                    HealthzHandler readyz)
      : registry_(registry), healthz_(std::move(healthz)), readyz_(std::move(readyz)) {}

  static int HandleMetrics(mg_connection* connection, void* server);
  static int HandleHealthz(mg_connection* connection, void* server);
  static int HandleReadyz(mg_connection* connection, void* server);

  const metrics::MetricsRegistry& registry_;
  const HealthzHandler healthz_;
  const HealthzHandler readyz_;
  mg_context* context_ = nullptr;
  int port_ = 0;
};

}  // namespace flatfleet::engine
