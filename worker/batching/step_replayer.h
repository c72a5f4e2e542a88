// The follower side of a StepPlan: a tensor-parallel peer runs rank 0's plans on its own model
// shard and KV cache, in the same order, so its cache mirrors rank 0's sequence by sequence.
#pragma once

#include <map>

#include "absl/status/statusor.h"
#include "common/tensor.h"
#include "worker/batching/step_plan.h"
#include "worker/model/kv_cache.h"
#include "worker/model/llama_model.h"

namespace flatfleet::engine {

class StepReplayer {
 public:
  // `model` and `cache` must outlive the replayer; the cache must be used by nothing else.
  StepReplayer(const LlamaModel& model, KvCache& cache) : model_(model), cache_(cache) {}

  // Frees the plan's released sequences, adds its new ones and runs its forward pass. Returns
  // the logits (one row per chunk, its last token), as rank 0 computed them.
  absl::StatusOr<Tensor> Replay(const StepPlan& plan);

  // Sequences (rank 0's ids) this peer currently holds.
  size_t live_sequences() const { return local_.size(); }

 private:
  const LlamaModel& model_;
  KvCache& cache_;
  std::map<SequenceId, SequenceId> local_;  // rank 0's sequence id -> this cache's
};

}  // namespace flatfleet::engine
