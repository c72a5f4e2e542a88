#include "coordinator/server/scheduler.h"

#include <map>
#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"

namespace flatfleet::coordinator {

Scheduler::Scheduler(JobStore* store, CoordinatorMetrics* metrics, ModelSpec model,
                     ClusterPlan plan, SchedulerOptions options) {
  context_.store = store;
  context_.metrics = metrics;
  context_.model = std::move(model);
  context_.tp_size = plan.tp_size;
  context_.options = options;
  context_.next_work_id = &next_work_id_;
  context_.job_cancelled = [this](const std::string& job_id) {
    absl::MutexLock lock(&mutex_);
    return cancelled_jobs_.contains(job_id);
  };
  for (WorkerGroupPlan& group : plan.groups) {
    sessions_.push_back(std::make_unique<WorkerGroupSession>(&context_, std::move(group)));
  }
}

Scheduler::~Scheduler() { Stop(); }

void Scheduler::Start() {
  for (auto& session : sessions_) session->Start();
  if (context_.metrics) gauges_thread_ = std::thread([this] { RefreshGaugesLoop(); });
}

void Scheduler::Stop() {
  {
    absl::MutexLock lock(&mutex_);
    stopping_ = true;
  }
  for (auto& session : sessions_) session->Stop();
  if (gauges_thread_.joinable()) gauges_thread_.join();
}

void Scheduler::WakeAll() {
  for (auto& session : sessions_) session->Wake();
}

void Scheduler::StopJob(const std::string& job_id, const std::vector<RequestKey>& requests) {
  {
    absl::MutexLock lock(&mutex_);
    cancelled_jobs_.insert(job_id);
  }
  for (auto& session : sessions_) session->Cancel(requests);
}

int Scheduler::connected_groups() const {
  int connected = 0;
  for (const auto& session : sessions_) connected += session->connected() ? 1 : 0;
  return connected;
}

absl::StatusOr<v1::Response> Scheduler::Generate(const v1::RequestBody& body,
                                                 absl::Duration timeout) {
  struct Outcome {
    absl::Notification done;
    absl::StatusOr<v1::WorkResult> result;
  };
  auto outcome = std::make_shared<Outcome>();
  const size_t count = sessions_.size();
  const size_t first = next_interactive_group_.fetch_add(1);
  for (size_t i = 0; i < count; ++i) {
    WorkerGroupSession& session = *sessions_[(first + i) % count];
    absl::StatusOr<uint64_t> work_id =
        session.SubmitInteractive(body, [outcome](absl::StatusOr<v1::WorkResult> result) {
          outcome->result = std::move(result);
          outcome->done.Notify();
        });
    if (!work_id.ok()) continue;
    if (!outcome->done.WaitForNotificationWithTimeout(timeout)) {
      session.CancelInteractive(*work_id);
      if (context_.metrics) context_.metrics->CountRequest("failed");
      return absl::DeadlineExceededError("no answer from the worker in time");
    }
    if (!outcome->result.ok()) return outcome->result.status();
    const v1::WorkResult& result = *outcome->result;
    if (result.has_error()) {
      if (context_.metrics) context_.metrics->CountRequest("failed");
      return absl::InternalError(
          absl::StrCat("worker error ", result.error().code(), ": ", result.error().message()));
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
    }
    for (const auto& [state, count] : by_state) context_.metrics->SetJobsInState(state, count);
    context_.metrics->SetQueueDepth(pending);
  }
}

}  // namespace flatfleet::coordinator
