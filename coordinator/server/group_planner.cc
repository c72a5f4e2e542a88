#include "coordinator/server/group_planner.h"

#include <algorithm>
#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace flatfleet::coordinator {

absl::StatusOr<GroupBackend> ChooseGroupBackend(const std::vector<bool>& rank_needs_nccl) {
  std::vector<size_t> gpu, cpu;
  for (size_t rank = 0; rank < rank_needs_nccl.size(); ++rank) {
    (rank_needs_nccl[rank] ? gpu : cpu).push_back(rank);
  }
  if (gpu.empty()) return GroupBackend::kGloo;
  if (cpu.empty()) return GroupBackend::kNccl;
  return absl::FailedPreconditionError(absl::StrCat(
      "the group mixes GPU workers (ranks ", absl::StrJoin(gpu, ", "), ") with CPU workers (ranks ",
      absl::StrJoin(cpu, ", "), "); give each group workers of one kind"));
}

absl::StatusOr<ClusterPlan> PlanWorkerGroups(uint64_t model_bytes,
                                             const std::vector<WorkerInfo>& workers,
                                             const PlannerOptions& options) {
  if (workers.empty()) return absl::InvalidArgumentError("no workers to plan groups for");
  uint64_t smallest = std::numeric_limits<uint64_t>::max();
  for (const WorkerInfo& worker : workers) {
    if (worker.device_memory_bytes > 0) smallest = std::min(smallest, worker.device_memory_bytes);
  }
  // The shard must leave the headroom fraction of the device free.
  const double usable = static_cast<double>(smallest) * (1.0 - options.kv_cache_headroom_fraction);
  uint32_t tp = 1;
  if (options.forced_tp > 0) {
    tp = options.forced_tp;
  } else {
    while (static_cast<double>(model_bytes) / tp > usable) {
      tp *= 2;
      if (tp > options.max_tp) {
        return absl::ResourceExhaustedError(absl::StrCat(
            "a model of ", model_bytes, " bytes does not fit ", options.max_tp, " workers of ",
            smallest, " bytes with ", options.kv_cache_headroom_fraction * 100, "% headroom"));
      }
    }
  }
  if (tp > workers.size()) {
    return absl::ResourceExhaustedError(absl::StrCat("the model needs tp=", tp, " but only ",
                                                     workers.size(), " workers are configured"));
  }
  ClusterPlan plan;
  plan.tp_size = tp;
  const size_t group_count = workers.size() / tp;
  for (size_t g = 0; g < group_count; ++g) {
    WorkerGroupPlan group;
    group.group_id = absl::StrCat("group-", g);
    for (uint32_t rank = 0; rank < tp; ++rank) {
      group.rank_addresses.push_back(workers[g * tp + rank].address);
    }
    plan.groups.push_back(std::move(group));
  }
  for (size_t i = group_count * tp; i < workers.size(); ++i) {
    plan.unused_workers.push_back(workers[i].address);
  }
  return plan;
}

}  // namespace flatfleet::coordinator
