#include "coordinator/server/scheduler.h"

#include <cstdio>
#include <deque>
#include <map>
#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"

namespace flatfleet::coordinator {

Scheduler::Scheduler(JobStore* store, CoordinatorMetrics* metrics, ModelSpec model,
                     SchedulerOptions options) {
  context_.store = store;
  context_.metrics = metrics;
  context_.model = std::move(model);
  context_.options = options;
  context_.next_work_id = &next_work_id_;
  context_.job_cancelled = [this](const std::string& job_id) {
    absl::MutexLock lock(&mutex_);
    return cancelled_jobs_.contains(job_id);
  };
}

Scheduler::~Scheduler() { Stop(); }

void Scheduler::Start() {
  if (context_.metrics) gauges_thread_ = std::thread([this] { RefreshGaugesLoop(); });
  lease_sweeper_thread_ = std::thread([this] { SweepExpiredLeasesLoop(); });
}

void Scheduler::StartGroups(ClusterPlan plan) {
  // Held across the check so that a concurrent Stop() sees (and stops) what starts here.
  absl::MutexLock lock(&sessions_mutex_);
  {
    absl::MutexLock stop_lock(&mutex_);
    if (stopping_) return;
  }
  if (!sessions_.empty()) return;
  // Written before any session exists; sessions only read it.
  context_.tp_size = plan.tp_size;
  for (WorkerGroupPlan& group : plan.groups) {
    sessions_.push_back(std::make_unique<WorkerGroupSession>(&context_, std::move(group)));
  }
  for (auto& session : sessions_) session->Start();
}

std::vector<WorkerGroupSession*> Scheduler::Sessions() const {
  absl::MutexLock lock(&sessions_mutex_);
  std::vector<WorkerGroupSession*> sessions;
  for (const auto& session : sessions_) sessions.push_back(session.get());
  return sessions;
}

void Scheduler::Stop() {
  {
    absl::MutexLock lock(&mutex_);
    stopping_ = true;
  }
  for (WorkerGroupSession* session : Sessions()) session->Stop();
  if (gauges_thread_.joinable()) gauges_thread_.join();
  if (lease_sweeper_thread_.joinable()) lease_sweeper_thread_.join();
}

void Scheduler::WakeAll() {
  for (WorkerGroupSession* session : Sessions()) session->Wake();
}

void Scheduler::StopJob(const std::string& job_id, const std::vector<RequestKey>& requests) {
  {
    absl::MutexLock lock(&mutex_);
    cancelled_jobs_.insert(job_id);
  }
  for (WorkerGroupSession* session : Sessions()) session->Cancel(requests);
}

int Scheduler::connected_groups() const {
  int connected = 0;
  for (WorkerGroupSession* session : Sessions()) connected += session->connected() ? 1 : 0;
  return connected;
}

absl::StatusOr<v1::Response> Scheduler::Generate(const v1::RequestBody& body,
                                                 absl::Duration timeout, TextCallback on_text) {
  // Filled by the session's reader thread; the caller's thread runs on_text, so a slow client
  // never holds up the stream that carries the group's other work.
  struct Outcome {
    absl::Mutex mutex;
    bool done ABSL_GUARDED_BY(mutex) = false;
    std::deque<std::string> texts ABSL_GUARDED_BY(mutex);
    absl::StatusOr<v1::WorkResult> result;
  };
  auto outcome = std::make_shared<Outcome>();
  WorkerGroupSession::PartialCallback partial;
  if (on_text) {
    partial = [outcome](std::string text) {
      absl::MutexLock lock(&outcome->mutex);
      outcome->texts.push_back(std::move(text));
    };
  }
  // Runs on_text for what arrived; true once the final result is in (or on_text refused more).
  bool refused = false;
  const auto wait_until = [&](absl::Time deadline) {
    while (true) {
      std::deque<std::string> texts;
      bool done;
      {
        absl::MutexLock lock(&outcome->mutex);
        const auto ready = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(outcome->mutex) {
          return outcome->done || !outcome->texts.empty();
        };
        outcome->mutex.AwaitWithDeadline(absl::Condition(&ready), deadline);
        texts.swap(outcome->texts);
        done = outcome->done;
      }
      for (const std::string& text : texts) {
        if (!on_text(text)) {
          refused = true;
          return true;
        }
      }
      if (done) return true;
      if (texts.empty() && absl::Now() >= deadline) return false;
    }
  };
  const std::vector<WorkerGroupSession*> sessions = Sessions();
  const size_t count = sessions.size();
  const size_t first = next_interactive_group_.fetch_add(1);
  for (size_t i = 0; i < count; ++i) {
    WorkerGroupSession& session = *sessions[(first + i) % count];
    absl::StatusOr<uint64_t> work_id = session.SubmitInteractive(
        body,
        [outcome](absl::StatusOr<v1::WorkResult> result) {
          absl::MutexLock lock(&outcome->mutex);
          outcome->result = std::move(result);
          outcome->done = true;
        },
        partial);
    if (!work_id.ok()) continue;
    if (!wait_until(absl::Now() + timeout)) {
      session.CancelInteractive(*work_id);
      if (context_.metrics) context_.metrics->CountRequest("failed");
      return absl::DeadlineExceededError("no answer from the worker in time");
    }
    if (refused) {
      session.CancelInteractive(*work_id);
      if (context_.metrics) context_.metrics->CountRequest("cancelled");
      return absl::CancelledError("the streaming client disconnected; the request was cancelled");
    }
    if (!outcome->result.ok()) return outcome->result.status();
    const v1::WorkResult& result = *outcome->result;
    if (result.has_error()) {
      if (context_.metrics) context_.metrics->CountRequest("failed");
      const std::string message =
          absl::StrCat("worker error ", result.error().code(), ": ", result.error().message());
      // What the request itself got wrong keeps its code (an HTTP 400, not a 500).
      const std::string& code = result.error().code();
      if (code == "invalid_argument") return absl::InvalidArgumentError(message);
      if (code == "out_of_range") return absl::OutOfRangeError(message);
      if (code == "failed_precondition") return absl::FailedPreconditionError(message);
      return absl::InternalError(message);
    }
    if (context_.metrics) {
      context_.metrics->CountRequest("succeeded");
      context_.metrics->AddTokens(result.response().usage().prompt_tokens(),
                                  result.response().usage().completion_tokens());
    }
    return result.response();
  }
  return absl::UnavailableError("no worker group is connected");
}

void Scheduler::SweepExpiredLeasesLoop() {
  while (true) {
    {
      absl::MutexLock lock(&mutex_);
      const absl::Time until = absl::Now() + context_.options.lease_sweep_interval;
      if (mutex_.AwaitWithDeadline(absl::Condition(&stopping_), until)) return;
    }
    absl::StatusOr<RequeueReport> report = context_.store->RequeueExpiredLeases("lease expired");
    if (!report.ok()) {
      std::fprintf(stderr, "coordinator: %s\n", report.status().ToString().c_str());
      continue;
    }
    if (report->requeued + report->failed + report->cancelled == 0) continue;
    std::fprintf(stderr,
                 "coordinator: expired leases: %lld requeued, %lld failed, %lld cancelled\n",
                 static_cast<long long>(report->requeued), static_cast<long long>(report->failed),
                 static_cast<long long>(report->cancelled));
    if (context_.metrics) {
      context_.metrics->CountRequest("requeued", static_cast<double>(report->requeued));
      context_.metrics->CountRequest("failed", static_cast<double>(report->failed));
      context_.metrics->CountRequest("cancelled", static_cast<double>(report->cancelled));
    }
    if (report->requeued > 0) WakeAll();
  }
}

void Scheduler::RefreshGaugesLoop() {
  // Newest jobs only: old finished ones do not change these gauges' meaning much.
  constexpr int kJobsScanned = 1000;
  while (true) {
    {
      absl::MutexLock lock(&mutex_);
      const absl::Time until = absl::Now() + context_.options.metrics_refresh_interval;
      if (mutex_.AwaitWithDeadline(absl::Condition(&stopping_), until)) return;
    }
    absl::StatusOr<std::vector<JobRecord>> jobs = context_.store->ListJobs(kJobsScanned);
    if (!jobs.ok()) continue;
    std::map<std::string, double> by_state;
    for (JobState state :
         {JobState::kValidating, JobState::kInProgress, JobState::kFinalizing, JobState::kCompleted,
          JobState::kFailed, JobState::kCancelling, JobState::kCancelled}) {
      by_state[std::string(JobStateName(state))] = 0;
    }
    double pending = 0;
    for (const JobRecord& job : *jobs) {
      by_state[std::string(JobStateName(job.state))] += 1;
      if (job.state == JobState::kInProgress) pending += static_cast<double>(job.counts.pending);
      const bool finished = job.state == JobState::kCompleted || job.state == JobState::kFailed ||
                            job.state == JobState::kCancelled;
      const RequestCounts& c = job.counts;
      context_.metrics->RecordBatch(
          job.id, finished, static_cast<double>(c.pending), static_cast<double>(c.in_flight),
          static_cast<double>(c.completed), static_cast<double>(c.failed),
          static_cast<double>(c.cancelled),
          static_cast<double>(job.updated_at_ms - job.created_at_ms) / 1000.0);
    }
    for (const auto& [state, count] : by_state) context_.metrics->SetJobsInState(state, count);
    context_.metrics->SetQueueDepth(pending);
  }
}

}  // namespace flatfleet::coordinator
