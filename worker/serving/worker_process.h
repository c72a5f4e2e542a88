// One worker process's servers wired together: the WorkerService on gRPC (with the standard
// health service and reflection), its metrics, and the HTTP /metrics and /healthz endpoints.
// `flatfleet serve worker` and the tests start workers through this.
#pragma once

#include <atomic>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "security/transport_security.h"
#include "worker/serving/metrics_http_server.h"
#include "worker/serving/worker_metrics.h"
#include "worker/serving/worker_service.h"

namespace flatfleet::engine {

struct WorkerProcessOptions {
  // "host:port"; port 0 picks a free port (see address()).
  std::string listen_address = "127.0.0.1:0";
  // Empty: no HTTP server.
  std::string metrics_listen_address = "127.0.0.1:0";
  // Bound on one gRPC message either way (a WorkItem or a WorkResult).
  int max_message_bytes = 16 << 20;
  // TLS (mutual when a client CA is set) and the cluster-secret check; plaintext by default.
  security::ServerSecurity security;
  // model_loader and engine_factory are required; on_state_change is taken by the process.
  WorkerServiceOptions service;
};

class WorkerProcess {
 public:
  static absl::StatusOr<std::unique_ptr<WorkerProcess>> Start(WorkerProcessOptions options);
  // Stops the servers at once (cancelling open calls) if Shutdown() was not called.
  ~WorkerProcess();

  // The gRPC address with the port actually bound, e.g. "127.0.0.1:41234".
  const std::string& address() const { return address_; }
  // 0 without an HTTP server.
  int metrics_port() const { return http_ != nullptr ? http_->port() : 0; }
  WorkerServiceImpl& service() { return *service_; }
  WorkerMetrics& metrics() { return *metrics_; }

  // Drains (waiting at most `drain_timeout` for running work), then stops the servers, giving
  // open streams `grace` to finish. Returns the drain's report or why it did not finish.
  absl::StatusOr<v1::DrainResponse> Shutdown(absl::Duration drain_timeout, absl::Duration grace);

 private:
  WorkerProcess() = default;
  // Called by the service (under its lock) on every state change.
  void OnStateChange(v1::WorkerState state);
  // The named health service is SERVING exactly when the worker is READY.
  void PublishServingStatus() ABSL_EXCLUSIVE_LOCKS_REQUIRED(health_mutex_);

  std::unique_ptr<WorkerMetrics> metrics_;
  std::unique_ptr<WorkerServiceImpl> service_;
  std::unique_ptr<grpc::Server> server_;
  const kernels::Backend* device_backend_ = nullptr;
  // The service's state as of its latest change: /healthz and the health service read it
  // without the service's lock, so a liveness probe never waits behind a load.
  std::atomic<v1::WorkerState> state_{v1::WORKER_STATE_IDLE};
  absl::Mutex health_mutex_;
  grpc::HealthCheckServiceInterface* health_ ABSL_GUARDED_BY(health_mutex_) = nullptr;
  std::unique_ptr<MetricsHttpServer> http_;
  std::string address_;
  bool shut_down_ = false;
};

}  // namespace flatfleet::engine
