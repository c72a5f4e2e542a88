// Decides the tensor-parallel degree and forms worker groups. tp is the smallest power of two
// whose per-rank shard, plus headroom for the KV cache, fits the smallest worker's memory (or
// the forced tp); workers are then grouped tp at a time in the order given (left-over workers
// stay idle).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace flatfleet::coordinator {

struct WorkerInfo {
  std::string address;
  uint64_t device_memory_bytes = 0;  // 0: unknown, taken as large enough.
};

struct PlannerOptions {
  // Fraction of a device kept for the KV cache and activations on top of the shard.
  double kv_cache_headroom_fraction = 0.3;
  uint32_t max_tp = 8;
  // Use exactly this tp (e.g. `serve coordinator --tp 2`) instead of deriving it; 0 derives.
  uint32_t forced_tp = 0;
};

struct WorkerGroupPlan {
  std::string group_id;
  std::vector<std::string> rank_addresses;  // Index = tp rank; rank 0 serves RunWork.
};

struct ClusterPlan {
  uint32_t tp_size = 1;
  std::vector<WorkerGroupPlan> groups;
  std::vector<std::string> unused_workers;
};

enum class GroupBackend { kGloo, kNccl };

// The collectives a group runs on, from what each rank says it needs (Health's
// collective_backend; true: a GPU worker that needs NCCL): NCCL when every rank is a GPU worker,
// Gloo when none is. A group mixing both cannot run (a GPU model needs device collectives, a CPU
// one host collectives): FailedPrecondition naming the ranks.
absl::StatusOr<GroupBackend> ChooseGroupBackend(const std::vector<bool>& rank_needs_nccl);

absl::StatusOr<ClusterPlan> PlanWorkerGroups(uint64_t model_bytes,
                                             const std::vector<WorkerInfo>& workers,
                                             const PlannerOptions& options = {});

}  // namespace flatfleet::coordinator
