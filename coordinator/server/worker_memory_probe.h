// Asks workers for their device memory (WorkerService.Health) so the planner can choose tp
// from what the workers really have. Workers may still be starting, so each is retried until a
// shared deadline; one that never answers keeps its configured (or unknown, 0) memory.
#pragma once

#include <vector>

#include "absl/time/time.h"
#include "coordinator/server/group_planner.h"

namespace flatfleet::coordinator {

// Fills device_memory_bytes of every worker whose value is 0 from its Health reply. Returns how
// many workers answered.
int ProbeWorkerMemory(std::vector<WorkerInfo>& workers, absl::Duration timeout);

}  // namespace flatfleet::coordinator
