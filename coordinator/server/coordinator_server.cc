#include "coordinator/server/coordinator_server.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "coordinator/server/worker_memory_probe.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"
#include "security/server_credentials.h"

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

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(options.listen_address,
                           security::MakeServerCredentials(options.api_security), &port);
  builder.SetMaxReceiveMessageSize(options.max_message_bytes);
  builder.SetMaxSendMessageSize(options.max_message_bytes);
  builder.RegisterService(server->service_.get());
  server->server_ = builder.BuildAndStart();
  if (server->server_ == nullptr || port == 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", options.listen_address));
  }
  const std::string& listen = options.listen_address;
  server->address_ = absl::StrCat(listen.substr(0, listen.rfind(':')), ":", port);
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
