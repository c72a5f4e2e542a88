// A follower rank (tp_rank > 0) of a tensor-parallel group: a thread that receives rank 0's
// group messages and replays each step plan on this rank's shard and KV cache (StepReplayer),
// so its collectives meet rank 0's. It serves no requests itself.
//
// It ends on rank 0's stop message (`on_end` with OK), or on the first error: rank 0 lost or
// silent past the group's timeout (heartbeats keep an idle group alive), or a plan this rank
// cannot replay (`on_end` with the error).
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <thread>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "worker/batching/step_replayer.h"
#include "worker/collectives/communicator.h"
#include "worker/model/llama_model.h"
#include "worker/model/paged_kv_cache.h"

namespace flatfleet::engine {

class TensorParallelFollower {
 public:
  using EndCallback = std::function<void(const absl::Status&)>;
  // Called on the follower thread after every replayed step (for metrics).
  using StepCallback = std::function<void()>;

  // `model` and `communicator` must outlive the follower. `cache` must be at least as large as
  // rank 0's (same block size and block count).
  TensorParallelFollower(const LlamaModel& model, collectives::Communicator& communicator,
                         std::unique_ptr<PagedKvCache> cache, StepCallback on_step,
                         EndCallback on_end);
  // Asks the thread to stop after the message it is waiting for (rank 0 sends one at least
  // every heartbeat; a lost rank 0 fails the wait), then joins it.
  ~TensorParallelFollower();

  int64_t steps() const { return steps_.load(); }

 private:
  void Loop();

  const LlamaModel& model_;
  collectives::Communicator& communicator_;
  std::unique_ptr<PagedKvCache> cache_;
  StepReplayer replayer_;
  const StepCallback on_step_;
  const EndCallback on_end_;
  std::atomic<bool> stopping_{false};
  std::atomic<int64_t> steps_{0};
  std::thread thread_;
};

}  // namespace flatfleet::engine
