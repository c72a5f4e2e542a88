// Rank 0 of a tensor-parallel group as an InferenceEngine: the continuous batcher plans every
// step, and the plan goes to the followers (GroupMessage over the group's communicator) before
// the forward pass that all ranks then run together. While idle it sends heartbeats, and its
// destructor sends the stop that ends the group cleanly.
//
// When any collective fails (a follower died or went silent past the group's timeout) the engine
// reports the error once through `on_failure` before Step() returns the failed step's results,
// and from then on fails every step at once without touching the communicator.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "worker/batching/continuous_batcher.h"
#include "worker/batching/group_message.h"
#include "worker/collectives/failure_tracking_communicator.h"
#include "worker/serving/inference_engine.h"

namespace flatfleet::engine {

class TensorParallelLeader final : public InferenceEngine {
 public:
  using FailureCallback = std::function<void(const absl::Status&)>;

  // `communicator` (the one the batcher's model runs on) must outlive the engine.
  // `heartbeat_interval` must be well below the group's collective timeout.
  TensorParallelLeader(std::unique_ptr<ContinuousBatcher> batcher,
                       collectives::FailureTrackingCommunicator& communicator,
                       absl::Duration heartbeat_interval, FailureCallback on_failure);
  // Stops the heartbeats and, unless the group already failed, tells the followers to stop.
  ~TensorParallelLeader() override;

  absl::Status Submit(EngineRequest request) override;
  void Cancel(const std::string& id) override;
  std::vector<EngineResult> Step() override;
  bool Idle() const override;
  EngineStats Stats() const override;

 private:
  // Broadcasts one message to the followers; the first failure marks the group failed.
  absl::Status Send(const GroupMessage& message) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  void MarkFailed(const absl::Status& status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  void HeartbeatLoop();

  std::unique_ptr<ContinuousBatcher> batcher_;
  collectives::FailureTrackingCommunicator& communicator_;
  const absl::Duration heartbeat_interval_;
  const FailureCallback on_failure_;

  // Held across a whole step (broadcast and forward) so heartbeats never interleave with the
  // step's collectives.
  absl::Mutex mutex_;
  absl::Status failed_ ABSL_GUARDED_BY(mutex_);
  absl::Time last_sent_ ABSL_GUARDED_BY(mutex_);
  bool stopping_ ABSL_GUARDED_BY(mutex_) = false;
  std::thread heartbeat_thread_;
};

}  // namespace flatfleet::engine
