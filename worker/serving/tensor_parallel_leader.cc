#include "worker/serving/tensor_parallel_leader.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "worker/collectives/communicator.h"

namespace flatfleet::engine {

TensorParallelLeader::TensorParallelLeader(std::unique_ptr<ContinuousBatcher> batcher,
                                           collectives::FailureTrackingCommunicator& communicator,
                                           absl::Duration heartbeat_interval,
                                           FailureCallback on_failure)
    : batcher_(std::move(batcher)),
      communicator_(communicator),
      heartbeat_interval_(heartbeat_interval),
      on_failure_(std::move(on_failure)),
      // Set here, not under the mutex: the service constructs this under its own lock, and the
      // failure callback takes that lock while holding ours.
      last_sent_(absl::Now()) {
  batcher_->set_plan_hook([this](const StepPlan& plan) ABSL_NO_THREAD_SAFETY_ANALYSIS {
    // Runs inside Step(), which holds mutex_.
    return Send(GroupMessage{GroupMessageKind::kPlan, plan});
  });
  heartbeat_thread_ = std::thread([this] { HeartbeatLoop(); });
}

TensorParallelLeader::~TensorParallelLeader() {
  {
    absl::MutexLock lock(&mutex_);
    stopping_ = true;
  }
  heartbeat_thread_.join();
  absl::MutexLock lock(&mutex_);
  if (failed_.ok()) Send(GroupMessage{GroupMessageKind::kStop, {}}).IgnoreError();
}

absl::Status TensorParallelLeader::Send(const GroupMessage& message) {
  if (!failed_.ok()) return failed_;
  std::string bytes = EncodeGroupMessage(message);
  absl::Status sent = collectives::BroadcastMessage(communicator_, bytes, /*root=*/0);
  last_sent_ = absl::Now();
  if (!sent.ok()) MarkFailed(sent);
  return failed_;
}

void TensorParallelLeader::MarkFailed(const absl::Status& status) {
  if (!failed_.ok()) return;
  failed_ = absl::Status(status.code(),
                         absl::StrCat("tensor-parallel group lost a peer: ", status.message()));
  if (on_failure_) on_failure_(failed_);
}

void TensorParallelLeader::HeartbeatLoop() {
  absl::MutexLock lock(&mutex_);
  while (!stopping_) {
    const absl::Time due = last_sent_ + heartbeat_interval_;
    // Wakes early only to stop; a step in progress holds the mutex and moves `due` on.
    mutex_.AwaitWithDeadline(absl::Condition(&stopping_), due);
    if (stopping_ || !failed_.ok()) {
      if (!failed_.ok()) return;  // Nobody to talk to any more.
      continue;
    }
    if (absl::Now() >= last_sent_ + heartbeat_interval_) {
      Send(GroupMessage{GroupMessageKind::kHeartbeat, {}}).IgnoreError();
    }
  }
}

absl::Status TensorParallelLeader::Submit(EngineRequest request) {
  return batcher_->Submit(std::move(request));
}

void TensorParallelLeader::Cancel(const std::string& id) { batcher_->Cancel(id); }

std::vector<EngineResult> TensorParallelLeader::Step() {
  absl::MutexLock lock(&mutex_);
  std::vector<EngineResult> results = batcher_->Step();
  // A collective inside the forward pass failed: the model only says the forward failed.
  if (absl::Status broken = communicator_.first_error(); !broken.ok()) MarkFailed(broken);
  return results;
}

bool TensorParallelLeader::Idle() const { return batcher_->Idle(); }

EngineStats TensorParallelLeader::Stats() const { return batcher_->Stats(); }

}  // namespace flatfleet::engine
