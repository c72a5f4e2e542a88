// The gRPC WorkerService of one worker process: loads a model (LoadShard), runs work streamed
// by the coordinator through an InferenceEngine (RunWork), reports health and drains.
//
// Threads: gRPC handler threads only queue work; one engine thread (EngineDriver) steps the
// engine and routes each result to the RunWork stream that submitted it.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "flatfleet/v1/worker.grpc.pb.h"
#include "worker/batching/continuous_batcher.h"
#include "worker/collectives/tcp_store_server.h"
#include "worker/serving/engine_driver.h"
#include "worker/serving/engine_factory.h"
#include "worker/serving/inference_engine.h"
#include "worker/serving/model_loader.h"
#include "worker/serving/tensor_parallel_follower.h"
#include "worker/serving/work_conversion.h"
#include "worker/serving/worker_metrics.h"

namespace flatfleet::engine {

struct WorkerServiceOptions {
  ModelLoader model_loader;
  EngineFactory engine_factory;
  SamplingDefaults sampling_defaults;
  // Longest a Drain RPC (or DrainAndWait) waits for running work when its caller set no deadline.
  absl::Duration drain_timeout = absl::Minutes(10);
  // How often waiting handlers look for a client that went away.
  absl::Duration poll_interval = absl::Milliseconds(50);
  // Told about every state change (e.g. to flip the standard gRPC health service).
  std::function<void(v1::WorkerState)> on_state_change;
  // Tensor-parallel groups (tp_size > 1) always run the continuous batcher, whose step plans
  // rank 0 broadcasts; every rank of a group must use the same batcher options.
  ContinuousBatcherOptions group_batcher_options;
  // How often an idle rank 0 tells its followers it is still there; well below the group's
  // collective timeout.
  absl::Duration group_heartbeat_interval = absl::Seconds(1);
  // How often an open RunWork stream carries a heartbeat to the coordinator (its liveness and
  // progress checks depend on them).
  absl::Duration stream_heartbeat_interval = absl::Seconds(1);
  // The GPU backend models run on (serve worker --device cuda): Health reports its device
  // memory (cudaMemGetInfo) instead of physical RAM.
  const kernels::Backend* device_backend = nullptr;
};

class WorkerServiceImpl final : public v1::WorkerService::Service {
 public:
  // `metrics` must outlive the service.
  WorkerServiceImpl(WorkerServiceOptions options, WorkerMetrics& metrics);
  ~WorkerServiceImpl() override;

  grpc::Status LoadShard(grpc::ServerContext* context, const v1::LoadShardRequest* request,
                         v1::LoadShardResponse* response) override;
  grpc::Status OpenRendezvous(grpc::ServerContext* context,
                              const v1::OpenRendezvousRequest* request,
                              v1::OpenRendezvousResponse* response) override;
  grpc::Status Health(grpc::ServerContext* context, const v1::HealthRequest* request,
                      v1::HealthResponse* response) override;
  grpc::Status RunWork(grpc::ServerContext* context,
                       grpc::ServerReaderWriter<v1::WorkResult, v1::WorkItem>* stream) override;
  grpc::Status Drain(grpc::ServerContext* context, const v1::DrainRequest* request,
                     v1::DrainResponse* response) override;

  // Loads without an RPC (the CLI's --model preload).
  absl::Status Load(const v1::LoadShardRequest& request, v1::LoadShardResponse* response);
  // Stops intake and waits (at most `timeout`) for outstanding work, as the Drain RPC does;
  // `is_abandoned` (may be null) ends the wait early.
  absl::StatusOr<v1::DrainResponse> DrainAndWait(bool cancel_running, absl::Duration timeout,
                                                 const std::function<bool()>& is_abandoned);

  v1::WorkerState state() const;
  absl::StatusOr<v1::OpenRendezvousResponse> Open(const v1::OpenRendezvousRequest& request);

 private:
  class WorkStream;

  void SetState(v1::WorkerState state, std::string message) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  // The driver when the worker accepts work; else the status explaining why not.
  absl::StatusOr<std::shared_ptr<EngineDriver>> AcceptingDriver() const;
  // Validates and tokenizes one submission and hands it to the engine; failures come back on
  // the stream as that item's error. With `stream_text`, released text goes out as Partials.
  void SubmitWork(const std::shared_ptr<WorkStream>& stream, uint64_t work_id,
                  const v1::RequestBody& body, bool stream_text);
  void OnResult(const EngineResult& result);
  // Starts rank 0's engine or a follower's replay loop for a freshly loaded group rank.
  absl::Status StartGroupRank(const v1::LoadShardRequest& request)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  // The group lost a peer (or a collective failed): the worker turns FAILED and its RunWork
  // streams end with UNAVAILABLE so the coordinator re-dispatches their work elsewhere.
  void OnGroupFailure(const absl::Status& status);
  // A follower's loop ended: cleanly on rank 0's stop, else with the error.
  void OnFollowerEnd(const absl::Status& status);
  // Destroys a failed or ended group's engine, follower and model so LoadShard can start over.
  void TearDownModel();

  const WorkerServiceOptions options_;
  WorkerMetrics& metrics_;
  std::atomic<uint64_t> next_stream_id_{1};

  mutable absl::Mutex mutex_;
  v1::WorkerState state_ ABSL_GUARDED_BY(mutex_) = v1::WORKER_STATE_IDLE;
  std::string state_message_ ABSL_GUARDED_BY(mutex_);
  std::string model_path_ ABSL_GUARDED_BY(mutex_);
  // Set once by a successful load and kept until destruction (the driver holds references).
  std::unique_ptr<LoadedModel> model_ ABSL_GUARDED_BY(mutex_);
  ChatRendering chat_rendering_ ABSL_GUARDED_BY(mutex_);
  std::shared_ptr<EngineDriver> driver_ ABSL_GUARDED_BY(mutex_);
  // Follower ranks (tp_rank > 0) replay rank 0's steps instead of running an engine.
  std::unique_ptr<TensorParallelFollower> follower_ ABSL_GUARDED_BY(mutex_);
  // Rank 0 hosts its group's rendezvous store (OpenRendezvous).
  std::unique_ptr<collectives::TcpStoreServer> rendezvous_store_ ABSL_GUARDED_BY(mutex_);
  std::string group_description_ ABSL_GUARDED_BY(mutex_);  // "rank R/S of group G"
  // The group behind this worker's model failed (FAILED state) or rank 0 stopped it: results
  // of its engine are no longer trusted and a new LoadShard may replace the model.
  std::atomic<bool> group_failed_{false};
  bool group_ended_ ABSL_GUARDED_BY(mutex_) = false;
  // Results by kind, for Drain's report.
  uint64_t finished_total_ ABSL_GUARDED_BY(mutex_) = 0;
  uint64_t cancelled_total_ ABSL_GUARDED_BY(mutex_) = 0;
};

}  // namespace flatfleet::engine
