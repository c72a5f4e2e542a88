#include "worker/batching/step_replayer.h"

#include <vector>

#include "absl/strings/str_format.h"

namespace flatfleet::engine {

absl::StatusOr<Tensor> StepReplayer::Replay(const StepPlan& plan) {
  for (SequenceId released : plan.released) {
    auto it = local_.find(released);
    if (it == local_.end()) continue;  // released before this peer ever ran it
    cache_.RemoveSequence(it->second);
    local_.erase(it);
  }
  // Check the whole plan against this peer's state before changing the cache.
  for (const PlannedChunk& chunk : plan.chunks) {
    auto it = local_.find(chunk.sequence);
    if (chunk.new_sequence != (it == local_.end())) {
      return absl::FailedPreconditionError(absl::StrFormat(
          "step %d: sequence %d is %s here but the plan says it is %s", plan.step, chunk.sequence,
          it == local_.end() ? "unknown" : "live", chunk.new_sequence ? "new" : "live"));
    }
    if (chunk.fork_of != kNoFork && !local_.contains(chunk.fork_of)) {
      return absl::FailedPreconditionError(
          absl::StrFormat("step %d: sequence %d forks from %d, which is not live here", plan.step,
                          chunk.sequence, chunk.fork_of));
    }
    // A fork starts holding `begin` positions of its parent.
    const int64_t length = it != local_.end()         ? cache_.Length(it->second)
                           : chunk.fork_of != kNoFork ? chunk.begin
                                                      : 0;
    if (length != chunk.begin) {
      return absl::FailedPreconditionError(
          absl::StrFormat("step %d: sequence %d holds %d positions, the plan starts at %d",
                          plan.step, chunk.sequence, length, chunk.begin));
    }
  }
  std::vector<SequenceChunk> chunks;
  chunks.reserve(plan.chunks.size());
  for (const PlannedChunk& chunk : plan.chunks) {
    if (chunk.new_sequence) {
      absl::StatusOr<SequenceId> sequence =
          chunk.fork_of == kNoFork ? cache_.AddSequence()
                                   : cache_.Fork(local_.at(chunk.fork_of), chunk.begin);
      if (!sequence.ok()) return sequence.status();
      local_[chunk.sequence] = *sequence;
    }
    chunks.push_back({local_.at(chunk.sequence), chunk.tokens, /*all_logits=*/false});
  }
  return model_.Forward(chunks, cache_);
}

}  // namespace flatfleet::engine
