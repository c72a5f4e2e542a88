#include "worker/serving/tensor_parallel_follower.h"

#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "worker/batching/group_message.h"

namespace flatfleet::engine {

TensorParallelFollower::TensorParallelFollower(const LlamaModel& model,
                                               collectives::Communicator& communicator,
                                               std::unique_ptr<PagedKvCache> cache,
                                               StepCallback on_step, EndCallback on_end)
    : model_(model),
      communicator_(communicator),
      cache_(std::move(cache)),
      replayer_(model_, *cache_),
      on_step_(std::move(on_step)),
      on_end_(std::move(on_end)) {
  thread_ = std::thread([this] { Loop(); });
}

TensorParallelFollower::~TensorParallelFollower() {
  stopping_ = true;
  thread_.join();
}

void TensorParallelFollower::Loop() {
  const int rank = communicator_.rank();
  while (!stopping_) {
    std::string bytes;
    if (absl::Status received = collectives::BroadcastMessage(communicator_, bytes, /*root=*/0);
        !received.ok()) {
      on_end_(absl::Status(received.code(), absl::StrCat("rank ", rank, " lost rank 0 of its ",
                                                         "group: ", received.message())));
      return;
    }
    absl::StatusOr<GroupMessage> message = ParseGroupMessage(bytes);
    if (!message.ok()) {
      on_end_(absl::Status(message.status().code(),
                           absl::StrCat("rank ", rank, ": ", message.status().message())));
      return;
    }
    switch (message->kind) {
      case GroupMessageKind::kHeartbeat:
        break;
      case GroupMessageKind::kStop:
        on_end_(absl::OkStatus());
        return;
      case GroupMessageKind::kPlan: {
        absl::StatusOr<Tensor> replayed = replayer_.Replay(message->plan);
        if (!replayed.ok()) {
          on_end_(
              absl::Status(replayed.status().code(),
                           absl::StrCat("rank ", rank, " failed to replay step ",
                                        message->plan.step, ": ", replayed.status().message())));
          return;
        }
        ++steps_;
        if (on_step_) on_step_();
        break;
      }
    }
  }
}

}  // namespace flatfleet::engine
