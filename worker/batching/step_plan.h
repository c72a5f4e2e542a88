// What one batching step does, decided on rank 0 and replayed by tensor-parallel peers: which
// cache sequences are released before the step and which token chunks the forward pass runs.
// Everything a peer needs is here (sequence ids as rank 0 numbers them, the tokens themselves);
// sampling stays on rank 0, which learns which sequences finished only after the forward.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/model/kv_cache.h"

namespace flatfleet::engine {

// PlannedChunk::fork_of of a sequence that does not start as a fork.
inline constexpr SequenceId kNoFork = -1;

struct PlannedChunk {
  SequenceId sequence = 0;
  // The cache must hold exactly `begin` positions of the sequence before the step.
  int64_t begin = 0;
  std::vector<int32_t> tokens;
  // The sequence enters the cache with this chunk (admission or re-admission after preemption).
  bool new_sequence = false;
  // A new sequence that starts as KvCache::Fork(fork_of, begin): its first `begin` positions
  // are those of live sequence `fork_of` (n > 1 choices sharing their prompt's blocks).
  SequenceId fork_of = kNoFork;
  // Rank 0 samples from the logits of the chunk's last token (the prompt or recompute ends).
  bool sample = false;

  bool operator==(const PlannedChunk&) const = default;
};

struct StepPlan {
  uint64_t step = 0;
  // Sequences whose cache is freed before the forward: finished or cancelled since the previous
  // plan, and preempted by this one (their requests are re-queued for recompute).
  std::vector<SequenceId> released;
  std::vector<SequenceId> preempted;  // the subset of `released` that was preempted
  // In forward order: decodes first, then prefill chunks.
  std::vector<PlannedChunk> chunks;

  int64_t num_tokens() const;
  bool operator==(const StepPlan&) const = default;
};

// A versioned little-endian byte encoding, for broadcasting plans to peers.
std::string SerializeStepPlan(const StepPlan& plan);
// Rejects truncated, oversized or malformed input with InvalidArgument (never crashes).
absl::StatusOr<StepPlan> ParseStepPlan(std::string_view bytes);

}  // namespace flatfleet::engine
