#include "worker/serving/metrics_http_server.h"

#include <cstring>
#include <mutex>
#include <string_view>

#include "absl/strings/str_cat.h"
#include "civetweb.h"

namespace flatfleet::engine {
namespace {

// civetweb wants its global state set up once per process before the first server.
void InitCivetwebOnce() {
  static std::once_flag once;
  std::call_once(once, [] { mg_init_library(0); });
}

// Answers methods other than GET/HEAD with 405; returns true when the request may proceed.
bool AllowOnlyGet(mg_connection* connection) {
  const mg_request_info* info = mg_get_request_info(connection);
  if (std::strcmp(info->request_method, "GET") == 0 ||
      std::strcmp(info->request_method, "HEAD") == 0) {
    return true;
  }
  mg_printf(connection,
            "HTTP/1.1 405 Method Not Allowed\r\nAllow: GET, HEAD\r\nContent-Type: text/plain\r\n"
            "Content-Length: 19\r\nConnection: close\r\n\r\nmethod not allowed\n");
  return false;
}

void Reply(mg_connection* connection, int status, std::string_view content_type,
           const std::string& body) {
  const char* reason = status == 200 ? "OK" : "Service Unavailable";
  mg_printf(connection,
            "HTTP/1.1 %d %s\r\nContent-Type: %.*s\r\nContent-Length: %zu\r\n"
            "Cache-Control: no-store\r\nConnection: close\r\n\r\n",
            status, reason, static_cast<int>(content_type.size()), content_type.data(),
            body.size());
  const mg_request_info* info = mg_get_request_info(connection);
  if (std::strcmp(info->request_method, "HEAD") != 0) {
    mg_write(connection, body.data(), body.size());
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<MetricsHttpServer>> MetricsHttpServer::Start(
    const std::string& address, const metrics::MetricsRegistry& registry, HealthzHandler healthz,
    HealthzHandler readyz) {
  InitCivetwebOnce();
  std::unique_ptr<MetricsHttpServer> server(
      new MetricsHttpServer(registry, std::move(healthz), std::move(readyz)));
  // A scrape or probe is one short request. Each thread serves one connection at a time, so a
  // client that sends half a request holds a thread until the timeout: with many threads and a
  // short timeout, a few such clients cannot make probes fail (docs/RELIABILITY.md).
  const std::string threads = absl::StrCat(kThreads);
  const std::string timeout = absl::StrCat(kRequestTimeoutMs);
  const char* options[] = {
      "listening_ports", address.c_str(),     "num_threads", threads.c_str(), "request_timeout_ms",
      timeout.c_str(),   "enable_keep_alive", "no",          nullptr};
  mg_callbacks callbacks;
  std::memset(&callbacks, 0, sizeof(callbacks));
  server->context_ = mg_start(&callbacks, nullptr, options);
  if (server->context_ == nullptr) {
    return absl::UnavailableError(
        absl::StrCat("cannot serve metrics on '", address, "' (bad address or port in use)"));
  }
  mg_set_request_handler(server->context_, "/metrics$", &MetricsHttpServer::HandleMetrics,
                         server.get());
  mg_set_request_handler(server->context_, "/healthz$", &MetricsHttpServer::HandleHealthz,
                         server.get());
  mg_set_request_handler(server->context_, "/readyz$", &MetricsHttpServer::HandleReadyz,
                         server.get());
  mg_server_port ports[1];
  if (mg_get_server_ports(server->context_, 1, ports) < 1 || ports[0].port <= 0) {
    return absl::InternalError(absl::StrCat("cannot tell the port bound for '", address, "'"));
  }
  server->port_ = ports[0].port;
  return server;
}

MetricsHttpServer::~MetricsHttpServer() {
  if (context_ != nullptr) mg_stop(context_);
}

int MetricsHttpServer::HandleMetrics(mg_connection* connection, void* server) {
  if (!AllowOnlyGet(connection)) return 405;
  const auto& self = *static_cast<MetricsHttpServer*>(server);
  Reply(connection, 200, metrics::MetricsRegistry::kContentType, self.registry_.Expose());
  return 200;
}

int MetricsHttpServer::HandleHealthz(mg_connection* connection, void* server) {
  if (!AllowOnlyGet(connection)) return 405;
  const auto& self = *static_cast<MetricsHttpServer*>(server);
  HealthzReply reply = self.healthz_ ? self.healthz_() : HealthzReply{true, "ok\n"};
  Reply(connection, reply.healthy ? 200 : 503, "text/plain; charset=utf-8", reply.body);
  return reply.healthy ? 200 : 503;
}

int MetricsHttpServer::HandleReadyz(mg_connection* connection, void* server) {
  if (!AllowOnlyGet(connection)) return 405;
  const auto& self = *static_cast<MetricsHttpServer*>(server);
  const HealthzHandler& handler = self.readyz_ ? self.readyz_ : self.healthz_;
  HealthzReply reply = handler ? handler() : HealthzReply{true, "ok\n"};
  Reply(connection, reply.healthy ? 200 : 503, "text/plain; charset=utf-8", reply.body);
  return reply.healthy ? 200 : 503;
}

}  // namespace flatfleet::engine
