// Decides the tensor-parallel degree and forms worker groups. tp is the smallest power of two
// whose per-rank need (RankMemoryNeed: what one rank of the model holds on its device, from the
// checkpoint's dtypes and shapes, plus its minimum KV cache, workspace and runtime overhead) fits
// device_memory_fraction of every worker's reported memory (or the forced tp); workers are then
// grouped tp at a time in the order given (left-over workers stay idle).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace flatfleet::coordinator {

// What a worker computes on, from its Health (collective_backend NCCL: a GPU worker).
enum class WorkerDevice { kUnknown, kGpu, kCpu };

struct WorkerInfo {
  std::string address;
  uint64_t device_memory_bytes = 0;  // 0: unknown, taken as large enough.
  // kUnknown (memory configured, or no Health answer) is planned as a GPU worker.
  WorkerDevice device = WorkerDevice::kUnknown;
};

// One rank's need on a worker of `device` (kGpu or kCpu) in a group of `tp` ranks: bytes, and
// how they add up (for the plan's message). An error means `tp` cannot split the model.
struct RankNeed {
  uint64_t bytes = 0;
  std::string breakdown;
};
using RankMemoryNeed = std::function<absl::StatusOr<RankNeed>(uint32_t tp, WorkerDevice device)>;

struct PlannerOptions {
  // Share of a worker's reported memory a rank may fill (the worker's --gpu-memory-fraction,
  // whose default this is: the rest stays free on the device).
  double device_memory_fraction = 0.9;
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
  // Why this tp: the per-rank need against the tightest worker's usable memory, and why each
  // smaller tp did not fit.
  std::string reason;
};

enum class GroupBackend { kGloo, kNccl };

// The collectives a group runs on, from what each rank says it needs (Health's
// collective_backend; true: a GPU worker that needs NCCL): NCCL when every rank is a GPU worker,
// Gloo when none is. A group mixing both cannot run (a GPU model needs device collectives, a CPU
// one host collectives): FailedPrecondition naming the ranks.
absl::StatusOr<GroupBackend> ChooseGroupBackend(const std::vector<bool>& rank_needs_nccl);

// ResourceExhausted when no tp up to max_tp fits (the message gives, for each tp, the need per
// rank and every worker's usable memory, or why tp cannot split the model) or when the chosen
// tp exceeds the workers configured.
absl::StatusOr<ClusterPlan> PlanWorkerGroups(const RankMemoryNeed& need,
                                             const std::vector<WorkerInfo>& workers,
                                             const PlannerOptions& options = {});

}  // namespace flatfleet::coordinator
