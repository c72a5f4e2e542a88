// The coordinator process's parts wired together: job store, metrics, planner, scheduler, and
// a gRPC server with BatchService, gRPC health and reflection.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "coordinator/job_store.h"
#include "coordinator/server/batch_service.h"
#include "coordinator/server/coordinator_metrics.h"
#include "coordinator/server/group_planner.h"
#include "coordinator/server/model_memory.h"
#include "coordinator/server/model_spec.h"
#include "coordinator/server/scheduler.h"
#include "grpcpp/grpcpp.h"
#include "security/transport_security.h"

namespace flatfleet::coordinator {

struct CoordinatorOptions {
  std::string listen_address = "127.0.0.1:7070";  // Port 0 picks a free one.
  std::string db_path;
  ModelSpec model;
  std::vector<WorkerInfo> workers;
  PlannerOptions planner;
  // What the planner counts per rank beside the weights (the minimum KV cache, the batcher's
  // step); its engine and tp_size are set per candidate.
  quant::RankMemoryOptions rank_memory;
  // How long planning waits for workers to report their memory (Health); unless planner.forced_tp
  // is set, workers with device_memory_bytes 0 are asked, all at once and after the API listens.
  absl::Duration worker_probe_timeout = absl::Seconds(10);
  SchedulerOptions scheduler;
  BatchServiceOptions service;
  // The public API's TLS and bearer tokens; plaintext and open by default. (The worker side
  // is scheduler.worker_channel.)
  security::ServerSecurity api_security;
  // Bound on one gRPC message either way; uploads are split into ~1 MiB messages by clients.
  int max_message_bytes = 16 << 20;
};

class CoordinatorServer {
 public:
  static absl::StatusOr<std::unique_ptr<CoordinatorServer>> Start(CoordinatorOptions options);
  ~CoordinatorServer();  // Shuts down.

  // Stops accepting calls (waiting a bounded time for running ones), then the scheduler.
  void Shutdown();

  // "127.0.0.1:PORT" with the port actually bound.
  const std::string& address() const { return address_; }
  // The worker groups, once planned (the API listens before the workers are probed); waits up
  // to `timeout` for planning. An error when planning failed (e.g. the model fits no group).
  absl::StatusOr<ClusterPlan> WaitForPlan(absl::Duration timeout = absl::InfiniteDuration());
  // Empty when ready to serve; else why not (for /readyz): still planning, planning failed, or
  // the job store cannot write (disk full, I/O error).
  std::string NotReadyReason();
  CoordinatorMetrics& metrics() { return *metrics_; }
  JobStore& store() { return *store_; }
  Scheduler& scheduler() { return *scheduler_; }

 private:
  CoordinatorServer() = default;

  // Probes the workers (unless their memory is known) and starts the scheduler's groups.
  void PlanAndStartGroups(CoordinatorOptions options, RankMemoryNeed need);

  std::unique_ptr<JobStore> store_;
  std::unique_ptr<CoordinatorMetrics> metrics_;
  absl::Mutex plan_mutex_;
  std::optional<absl::StatusOr<ClusterPlan>> plan_ ABSL_GUARDED_BY(plan_mutex_);
  std::thread planner_;
  std::unique_ptr<Scheduler> scheduler_;
  std::unique_ptr<BatchServiceImpl> service_;
  std::unique_ptr<grpc::Server> server_;
  std::string address_;
  bool shut_down_ = false;
};

}  // namespace flatfleet::coordinator
