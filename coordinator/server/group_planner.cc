#include "coordinator/server/group_planner.h"

#include <limits>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace flatfleet::coordinator {
namespace {

// Megabytes below a gigabyte, so that small models do not read as 0.00 GB.
std::string FormatBytes(double bytes) {
  return bytes >= 1e9 ? absl::StrFormat("%.2f GB", bytes / 1e9)
                      : absl::StrFormat("%.1f MB", bytes / 1e6);
}

// Workers of unknown kind are planned as GPU workers, the engine the planner sizes groups for.
WorkerDevice PlannedDevice(WorkerDevice device) {
  return device == WorkerDevice::kCpu ? WorkerDevice::kCpu : WorkerDevice::kGpu;
}

std::string DeviceName(WorkerDevice device) { return device == WorkerDevice::kCpu ? "CPU" : "GPU"; }

// Whether one rank of a tp-way group fits every worker, and the numbers that say so.
struct Fit {
  bool fits = false;
  std::string text;
};

Fit Evaluate(const RankMemoryNeed& need, uint32_t tp, const std::vector<WorkerInfo>& workers,
             const PlannerOptions& options) {
  std::map<WorkerDevice, RankNeed> needs;
  for (const WorkerInfo& worker : workers) {
    const WorkerDevice device = PlannedDevice(worker.device);
    if (needs.contains(device)) continue;
    absl::StatusOr<RankNeed> rank_need = need(tp, device);
    if (!rank_need.ok())
      return {false, absl::StrCat("tp=", tp, ": ", rank_need.status().message())};
    needs[device] = *std::move(rank_need);
  }
  std::vector<std::string> needed;
  for (const auto& [device, rank_need] : needs) {
    needed.push_back(absl::StrCat(rank_need.breakdown, " on a ", DeviceName(device), " worker"));
  }
  const std::string each =
      absl::StrCat("tp=", tp, ": each rank needs ", absl::StrJoin(needed, "; "));
  bool fits = true;
  std::vector<std::string> short_of;
  const WorkerInfo* tightest = nullptr;
  double tightest_margin = std::numeric_limits<double>::infinity();
  auto offers = [&](const WorkerInfo& worker) {
    return absl::StrCat(worker.address, " (", DeviceName(PlannedDevice(worker.device)), ") offers ",
                        FormatBytes(static_cast<double>(worker.device_memory_bytes) *
                                    options.device_memory_fraction),
                        " (", options.device_memory_fraction * 100, "% of ",
                        FormatBytes(static_cast<double>(worker.device_memory_bytes)), ")");
  };
  for (const WorkerInfo& worker : workers) {
    if (worker.device_memory_bytes == 0) continue;  // unknown: taken as large enough
    const double usable =
        static_cast<double>(worker.device_memory_bytes) * options.device_memory_fraction;
    const double margin = usable - static_cast<double>(needs[PlannedDevice(worker.device)].bytes);
    if (margin < 0) {
      fits = false;
      short_of.push_back(offers(worker));
    }
    if (margin < tightest_margin) {
      tightest_margin = margin;
      tightest = &worker;
    }
  }
  if (!fits) return {false, absl::StrCat(each, ", but ", absl::StrJoin(short_of, ", "))};
  if (tightest == nullptr) return {true, absl::StrCat(each, "; no worker reported its memory")};
  return {true, absl::StrCat(each, "; the tightest worker, ", offers(*tightest))};
}

}  // namespace

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

absl::StatusOr<ClusterPlan> PlanWorkerGroups(const RankMemoryNeed& need,
                                             const std::vector<WorkerInfo>& workers,
                                             const PlannerOptions& options) {
  if (workers.empty()) return absl::InvalidArgumentError("no workers to plan groups for");
  ClusterPlan plan;
  uint32_t tp = 0;
  if (options.forced_tp > 0) {
    tp = options.forced_tp;
    plan.reason =
        absl::StrCat("forced tp=", tp, " (", Evaluate(need, tp, workers, options).text, ")");
  } else {
    std::vector<std::string> rejected;
    for (uint32_t candidate = 1; candidate <= options.max_tp; candidate *= 2) {
      Fit fit = Evaluate(need, candidate, workers, options);
      if (fit.fits) {
        tp = candidate;
        plan.reason =
            rejected.empty()
                ? fit.text
                : absl::StrCat(fit.text, "; not fewer ranks: ", absl::StrJoin(rejected, "; "));
        break;
      }
      rejected.push_back(std::move(fit.text));
    }
    if (tp == 0) {
      return absl::ResourceExhaustedError(
          absl::StrCat("the model fits no tensor-parallel degree up to ", options.max_tp, ": ",
                       absl::StrJoin(rejected, "; ")));
    }
  }
  if (tp > workers.size()) {
    return absl::ResourceExhaustedError(absl::StrCat("the model needs tp=", tp, " but only ",
                                                     workers.size(),
                                                     " workers are configured: ", plan.reason));
  }
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
