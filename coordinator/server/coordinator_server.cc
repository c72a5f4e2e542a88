#include "coordinator/server/coordinator_server.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "coordinator/server/worker_memory_probe.h"
#include "security/secure_server.h"

namespace flatfleet::coordinator {

absl::StatusOr<std::unique_ptr<CoordinatorServer>> CoordinatorServer::Start(
    CoordinatorOptions options) {
  std::unique_ptr<CoordinatorServer> server(new CoordinatorServer());
  FF_ASSIGN_OR_RETURN(server->store_, JobStore::Open(options.db_path));
  FF_ASSIGN_OR_RETURN(server->metrics_, CoordinatorMetrics::Create());
  FF_ASSIGN_OR_RETURN(const uint64_t model_bytes, ModelWeightBytes(options.model));
  if (options.planner.forced_tp == 0) {
    ProbeWorkerMemory(options.workers, options.worker_probe_timeout,
                      options.scheduler.worker_channel);
  }
  FF_ASSIGN_OR_RETURN(server->plan_,
                      PlanWorkerGroups(model_bytes, options.workers, options.planner));
  server->scheduler_ = std::make_unique<Scheduler>(server->store_.get(), server->metrics_.get(),
                                                   options.model, server->plan_, options.scheduler);
  server->service_ = std::make_unique<BatchServiceImpl>(
      server->store_.get(), server->scheduler_.get(), std::move(options.service));

  grpc::Service* const services[] = {server->service_.get()};
  FF_ASSIGN_OR_RETURN(security::StartedServer started,
                      security::StartSecureServer(options.listen_address, options.api_security,
                                                  options.max_message_bytes, services));
  server->server_ = std::move(started.server);
  server->address_ = std::move(started.address);
  server->scheduler_->Start();
  return server;
}

CoordinatorServer::~CoordinatorServer() { Shutdown(); }

void CoordinatorServer::Shutdown() {
  if (shut_down_) return;
  shut_down_ = true;
  if (service_) service_->BeginShutdown();
  if (server_) {
    server_->GetHealthCheckService()->Shutdown();
    // Following streams notice BeginShutdown within a poll; others get a few seconds.
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(3));
    server_->Wait();
  }
  if (scheduler_) scheduler_->Stop();
}

}  // namespace flatfleet::coordinator
