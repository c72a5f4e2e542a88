// Feeds the job store's pending requests to worker groups: one WorkerGroupSession (and one
// RunWork stream) per group, each with a bounded in-flight window; claims go round-robin
// across jobs. Also routes interactive Generate calls and stops cancelled work.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "coordinator/job_store.h"
#include "coordinator/server/coordinator_metrics.h"
#include "coordinator/server/group_planner.h"
#include "coordinator/server/model_spec.h"
#include "coordinator/server/scheduler_options.h"
#include "coordinator/server/worker_group_session.h"
#include "flatfleet/v1/batch.pb.h"

namespace flatfleet::coordinator {

class Scheduler {
 public:
  // `store` and `metrics` (which may be null) must outlive the scheduler. Worker groups come
  // later, with StartGroups, so the API can serve while workers are still being probed.
  Scheduler(JobStore* store, CoordinatorMetrics* metrics, ModelSpec model,
            SchedulerOptions options = {});
  ~Scheduler();  // Stops.

  // Starts the lease sweeper and the gauges.
  void Start();
  // Starts one session per group of `plan`; called once. No-op once stopping.
  void StartGroups(ClusterPlan plan);
  // Closes every stream; in-flight requests go back to pending without spending attempts.
  void Stop();

  // New pending work exists (a job was created).
  void WakeAll();
  // Stops `requests` of `job_id` wherever they run; later claims of the job are released.
  void StopJob(const std::string& job_id, const std::vector<RequestKey>& requests);

  // Called on Generate's thread with each piece of text the worker released, in order; returns
  // false to cancel the request (a streaming client that disconnected).
  using TextCallback = std::function<bool(const std::string& text)>;
  // Runs one request on a connected group (round-robin), waiting at most `timeout`. With
  // `on_text` the worker streams the text: the pieces concatenated are a prefix of the final
  // response's text (the rest arrives only with it). When on_text returns false the worker is
  // told to stop the request and Generate returns Cancelled.
  absl::StatusOr<v1::Response> Generate(const v1::RequestBody& body, absl::Duration timeout,
                                        TextCallback on_text = nullptr);

  const ModelSpec& model() const { return context_.model; }
  int connected_groups() const;

 private:
  void RefreshGaugesLoop();
  // Returns requests whose lease expired (a stalled worker) to pending, until stopped.
  void SweepExpiredLeasesLoop();

  // The sessions started so far (they live until the scheduler stops).
  std::vector<WorkerGroupSession*> Sessions() const;

  SessionContext context_;
  std::atomic<uint64_t> next_work_id_{1};
  mutable absl::Mutex sessions_mutex_;
  std::vector<std::unique_ptr<WorkerGroupSession>> sessions_ ABSL_GUARDED_BY(sessions_mutex_);
  std::atomic<size_t> next_interactive_group_{0};

  absl::Mutex mutex_;
  absl::flat_hash_set<std::string> cancelled_jobs_ ABSL_GUARDED_BY(mutex_);
  bool stopping_ ABSL_GUARDED_BY(mutex_) = false;
  std::thread gauges_thread_;
  std::thread lease_sweeper_thread_;
};

}  // namespace flatfleet::coordinator
