#include "coordinator/server/coordinator_server.h"

#include <cstdio>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "coordinator/server/worker_memory_probe.h"
#include "security/secure_server.h"

namespace flatfleet::coordinator {

absl::StatusOr<std::unique_ptr<CoordinatorServer>> CoordinatorServer::Start(
    CoordinatorOptions options) {
  std::unique_ptr<CoordinatorServer> server(new CoordinatorServer());
  FF_ASSIGN_OR_RETURN(server->metrics_, CoordinatorMetrics::Create(options.model.name));
  JobStoreOptions store_options;
  CoordinatorMetrics* metrics = server->metrics_.get();
  store_options.on_storage_failure = [metrics](std::string_view operation) {
    metrics->CountStoreError(operation);
  };
  FF_ASSIGN_OR_RETURN(server->store_, JobStore::Open(options.db_path, std::move(store_options)));
  // Read before listening: a model directory the planner cannot size is a startup error.
  FF_ASSIGN_OR_RETURN(quant::CheckpointShapes shapes, ReadModelShapes(options.model));
  RankMemoryNeed need = ModelRankNeed(std::move(shapes), options.rank_memory);
  server->scheduler_ = std::make_unique<Scheduler>(server->store_.get(), server->metrics_.get(),
                                                   options.model, options.scheduler);
  server->service_ = std::make_unique<BatchServiceImpl>(server->store_.get(),
                                                        server->scheduler_.get(), options.service);

  grpc::Service* const services[] = {server->service_.get()};
  FF_ASSIGN_OR_RETURN(security::StartedServer started,
                      security::StartSecureServer(options.listen_address, options.api_security,
                                                  options.max_message_bytes, services));
  server->server_ = std::move(started.server);
  server->address_ = std::move(started.address);
  server->scheduler_->Start();
  // Listening first: a stalled worker delays only its own group, never the API.
  CoordinatorServer* self = server.get();
  server->planner_ =
      std::thread([self, options = std::move(options), need = std::move(need)]() mutable {
        self->PlanAndStartGroups(std::move(options), std::move(need));
      });
  return server;
}

void CoordinatorServer::PlanAndStartGroups(CoordinatorOptions options, RankMemoryNeed need) {
  if (options.planner.forced_tp == 0) {
    ProbeWorkerMemory(options.workers, options.worker_probe_timeout,
                      options.scheduler.worker_channel);
  }
  absl::StatusOr<ClusterPlan> plan = PlanWorkerGroups(need, options.workers, options.planner);
  if (plan.ok()) {
    std::fprintf(stderr, "coordinator: planned tp=%u, %zu group(s): %s\n", plan->tp_size,
                 plan->groups.size(), plan->reason.c_str());
    scheduler_->StartGroups(*plan);
  } else {
    std::fprintf(stderr, "coordinator: cannot plan worker groups: %s\n",
                 plan.status().ToString().c_str());
  }
  absl::MutexLock lock(&plan_mutex_);
  plan_ = std::move(plan);
}

absl::StatusOr<ClusterPlan> CoordinatorServer::WaitForPlan(absl::Duration timeout) {
  absl::MutexLock lock(&plan_mutex_);
  const auto planned = [this]()
                           ABSL_EXCLUSIVE_LOCKS_REQUIRED(plan_mutex_) { return plan_.has_value(); };
  if (!plan_mutex_.AwaitWithTimeout(absl::Condition(&planned), timeout)) {
    return absl::DeadlineExceededError("the worker groups are still being planned");
  }
  return *plan_;
}

std::string CoordinatorServer::NotReadyReason() {
  {
    absl::MutexLock lock(&plan_mutex_);
    if (!plan_.has_value()) return "probing workers to plan groups";
    if (!plan_->ok()) return absl::StrCat("cannot plan worker groups: ", plan_->status().message());
  }
  if (std::optional<std::string> failure = store_->StorageFailure()) {
    return absl::StrCat("the job store cannot write: ", *failure);
  }
  return "";
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
  if (planner_.joinable()) planner_.join();
}

}  // namespace flatfleet::coordinator
