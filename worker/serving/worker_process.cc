#include "worker/serving/worker_process.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "grpcpp/health_check_service_interface.h"
#include "security/secure_server.h"

namespace flatfleet::engine {
namespace {

// The name under which the standard health service reports whether work is accepted: NOT_SERVING
// until a model is loaded (and the group formed), and again while draining or failed; the empty
// name ("the server") stays SERVING while the process is up. Kubernetes readiness and startup
// probes name this service (deploy/k8s/base/worker.yaml).
constexpr char kHealthServiceName[] = "flatfleet.v1.WorkerService";

}  // namespace

absl::StatusOr<std::unique_ptr<WorkerProcess>> WorkerProcess::Start(WorkerProcessOptions options) {
  if (!options.service.model_loader || !options.service.engine_factory) {
    return absl::InvalidArgumentError("a worker needs a model loader and an engine factory");
  }
  std::unique_ptr<WorkerProcess> process(new WorkerProcess());
  absl::StatusOr<std::unique_ptr<WorkerMetrics>> metrics = WorkerMetrics::Create();
  if (!metrics.ok()) return metrics.status();
  process->metrics_ = *std::move(metrics);
  WorkerProcess* self = process.get();
  process->device_backend_ = options.service.device_backend;
  process->metrics_->RecordState(v1::WORKER_STATE_IDLE);
  options.service.on_state_change = [self](v1::WorkerState state) { self->OnStateChange(state); };
  process->service_ =
      std::make_unique<WorkerServiceImpl>(std::move(options.service), *process->metrics_);

  grpc::Service* const services[] = {process->service_.get()};
  absl::StatusOr<security::StartedServer> started = security::StartSecureServer(
      options.listen_address, options.security, options.max_message_bytes, services);
  if (!started.ok()) return started.status();
  process->server_ = std::move(started->server);
  process->address_ = std::move(started->address);
  {
    // Under the lock a concurrent state change cannot publish between reading and setting.
    absl::MutexLock lock(&process->health_mutex_);
    process->health_ = process->server_->GetHealthCheckService();
    process->PublishServingStatus();
  }

  if (!options.metrics_listen_address.empty()) {
    absl::StatusOr<std::unique_ptr<MetricsHttpServer>> http = MetricsHttpServer::Start(
        options.metrics_listen_address, process->metrics_->registry(), [self] {
          // Alive unless the worker failed (a long load or step is alive); the body says
          // whether it takes work.
          const v1::WorkerState state = self->state_.load();
          return HealthzReply{state != v1::WORKER_STATE_FAILED,
                              absl::StrCat(v1::WorkerState_Name(state), "\n")};
        });
    if (!http.ok()) return http.status();
    process->http_ = *std::move(http);
  }
  return process;
}

void WorkerProcess::OnStateChange(v1::WorkerState state) {
  state_.store(state);
  metrics_->RecordState(state);
  int64_t free_bytes = 0, total_bytes = 0;
  // Weights, workspace and the KV pool are allocated by the time the state changes, so the
  // device's memory only moves here.
  if (device_backend_ != nullptr && device_backend_->DeviceMemory(&free_bytes, &total_bytes)) {
    metrics_->RecordDeviceMemory(free_bytes, total_bytes);
  }
  absl::MutexLock lock(&health_mutex_);
  PublishServingStatus();
}

void WorkerProcess::PublishServingStatus() {
  if (health_ != nullptr) {
    health_->SetServingStatus(kHealthServiceName, state_.load() == v1::WORKER_STATE_READY);
  }
}

absl::StatusOr<v1::DrainResponse> WorkerProcess::Shutdown(absl::Duration drain_timeout,
                                                          absl::Duration grace) {
  absl::StatusOr<v1::DrainResponse> drained =
      service_->DrainAndWait(/*cancel_running=*/false, drain_timeout, nullptr);
  if (!drained.ok()) {
    // Out of patience: cancel what is left so streams can end.
    absl::StatusOr<v1::DrainResponse> cancelled =
        service_->DrainAndWait(/*cancel_running=*/true, grace, nullptr);
    (void)cancelled;
  }
  server_->Shutdown(absl::ToChronoTime(absl::Now() + grace));
  server_->Wait();
  http_.reset();
  shut_down_ = true;
  return drained;
}

WorkerProcess::~WorkerProcess() {
  {
    absl::MutexLock lock(&health_mutex_);
    health_ = nullptr;
  }
  if (server_ != nullptr && !shut_down_) {
    server_->Shutdown(absl::ToChronoTime(absl::Now()));
    server_->Wait();
  }
  http_.reset();
  // The service (and its engine thread) goes before the metrics it records into.
  service_.reset();
}

}  // namespace flatfleet::engine
