// Drives one worker group: makes sure every rank has its shard loaded (LoadShard with the
// group's rendezvous), keeps one RunWork stream open to rank 0, claims pending requests from
// the job store up to the in-flight window, records each answer exactly once, and when the
// stream breaks requeues the group's in-flight requests (spending an attempt) and reconnects
// with backoff, reloading a restarted worker.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "coordinator/batch_request.h"
#include "coordinator/job_store.h"
#include "coordinator/server/coordinator_metrics.h"
#include "coordinator/server/group_planner.h"
#include "coordinator/server/model_spec.h"
#include "coordinator/server/scheduler_options.h"
#include "flatfleet/v1/worker.grpc.pb.h"
#include "grpcpp/grpcpp.h"

namespace flatfleet::coordinator {

// What the sessions of one scheduler share.
struct SessionContext {
  JobStore* store = nullptr;
  CoordinatorMetrics* metrics = nullptr;  // May be null.
  ModelSpec model;
  uint32_t tp_size = 1;
  SchedulerOptions options;
  std::atomic<uint64_t>* next_work_id = nullptr;
  // True for jobs cancelled since they were claimed: their claims are released, not sent.
  std::function<bool(const std::string& job_id)> job_cancelled;
};

// Called once with the worker's answer, or with an error if the stream broke first.
using InteractiveCallback = std::function<void(absl::StatusOr<v1::WorkResult>)>;

class WorkerGroupSession {
 public:
  WorkerGroupSession(const SessionContext* context, WorkerGroupPlan plan);
  ~WorkerGroupSession();  // Stops.

  void Start();
  // Ends the stream and returns in-flight requests to pending without spending attempts.
  void Stop();

  // New pending work may exist.
  void Wake();
  // Sends a cancel for each of `requests` running here.
  void Cancel(const std::vector<RequestKey>& requests);
  // Queues one request outside any batch. Returns its work id, or an error when the group has
  // no open stream.
  // With `partial` the worker also streams the text: each Partial's text is passed to it (on
  // the stream's reader thread, so it must not block) before `done` is called.
  using PartialCallback = std::function<void(std::string text)>;
  absl::StatusOr<uint64_t> SubmitInteractive(v1::RequestBody body, InteractiveCallback done,
                                             PartialCallback partial = nullptr);
  void CancelInteractive(uint64_t work_id);

  bool connected() const;
  const std::string& group_id() const { return plan_.group_id; }
  // The lease owner recorded on this group's claims.
  const std::string& owner() const { return owner_; }

 private:
  struct InFlight {
    std::optional<RequestKey> request;  // Unset for interactive work.
    std::string custom_id;
    Endpoint endpoint = Endpoint::kCompletions;
    InteractiveCallback done;
    PartialCallback partial;  // Interactive streaming work only.
    absl::Time dispatched_at;
  };
  using Stream = grpc::ClientReaderWriter<v1::WorkItem, v1::WorkResult>;
  // A worker's answer the store could not take (disk full, I/O error): kept and retried, never
  // dropped, so it is not computed again after a lease expires.
  struct Unrecorded {
    RequestKey request;
    ResultRecord record;
    uint32_t prompt_tokens = 0;
    uint32_t completion_tokens = 0;
    absl::Time dispatched_at;
  };

  void Run();
  // Health on every rank; LoadShard where no shard is loaded. OK once all ranks are READY.
  absl::Status EnsureLoaded();
  // One RunWork stream, until it breaks or the session stops.
  void Serve();
  // Returns false when the stream broke.
  bool DispatchQueued(Stream& stream);
  bool ClaimAndDispatch(Stream& stream, int free_slots, bool& maybe_more);
  void HandleResult(const v1::WorkResult& result);
  // Stores `answer`; false (and it is queued for a retry) when the store failed.
  bool Record(Unrecorded answer);
  // Retries what the store refused earlier (results; the requeue after a lost worker), at most
  // once per store_retry_interval. Returns true when nothing is left owed.
  bool RetryStoreWork();
  // Forgets batch work dispatched longer than the lease ago (the store's sweeper requeues it)
  // and cancels it on the worker, so a stalled request cannot hold a window slot forever; a
  // late answer is then dropped as unknown.
  void ExpireStaleWork();
  // Why the open stream counts as stalled (see SchedulerOptions::liveness_timeout), or empty.
  std::string StallReason();
  // After a stream ends: interactive callers get an error; batch requests go back.
  void FailInFlight(bool worker_lost);
  // Waits up to `timeout`, or until woken or stopped.
  void Sleep(absl::Duration timeout);
  // Waits `timeout` unless stopped; new work does not end it.
  void SleepUnlessStopped(absl::Duration timeout);
  // Runs a unary call whose context Stop() can cancel.
  template <typename Call>
  grpc::Status CallCancellable(absl::Duration timeout, Call call);

  const SessionContext* const context_;
  const WorkerGroupPlan plan_;
  const std::string owner_;
  std::vector<std::unique_ptr<v1::WorkerService::Stub>> stubs_;  // By rank.
  RoundRobinCursor cursor_;                                      // Only the session thread claims.
  std::thread thread_;

  mutable absl::Mutex mutex_;
  bool stopping_ ABSL_GUARDED_BY(mutex_) = false;
  bool woken_ ABSL_GUARDED_BY(mutex_) = false;
  bool stream_open_ ABSL_GUARDED_BY(mutex_) = false;
  bool stream_broken_ ABSL_GUARDED_BY(mutex_) = false;
  // Calls in progress, so Stop() can cancel them.
  std::vector<grpc::ClientContext*> active_calls_ ABSL_GUARDED_BY(mutex_);
  absl::CondVar signal_;
  std::string last_problem_;         // Logged once until it changes (session thread only).
  int64_t results_this_stream_ = 0;  // Session thread reads; reader thread writes under mutex_.
  absl::flat_hash_map<uint64_t, InFlight> in_flight_ ABSL_GUARDED_BY(mutex_);
  std::vector<uint64_t> cancels_to_send_ ABSL_GUARDED_BY(mutex_);
  std::vector<v1::WorkItem> interactive_to_send_ ABSL_GUARDED_BY(mutex_);
  std::vector<Unrecorded> unrecorded_ ABSL_GUARDED_BY(mutex_);
  // Liveness of the open stream: when anything last arrived, whether heartbeats come at all,
  // and when the engine last made progress (or work was first dispatched to an idle group).
  absl::Time last_message_at_ ABSL_GUARDED_BY(mutex_);
  bool heartbeats_seen_ ABSL_GUARDED_BY(mutex_) = false;
  uint64_t last_engine_steps_ ABSL_GUARDED_BY(mutex_) = 0;
  absl::Time last_progress_at_ ABSL_GUARDED_BY(mutex_);
  // Session thread only: the wait before serving again after a stall, and whether the last
  // stream ended stalled.
  absl::Duration stall_backoff_ = absl::ZeroDuration();
  bool last_stream_stalled_ = false;
  // Session thread only: a requeue of this group's claims that the store refused.
  std::optional<std::string> requeue_owed_;
  absl::Time next_store_retry_ = absl::InfinitePast();
  std::atomic<bool> store_failing_{false};  // Logged once per episode.
};

}  // namespace flatfleet::coordinator
