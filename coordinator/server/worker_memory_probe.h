// Asks workers for their device memory (WorkerService.Health) so the planner can choose tp
// from what the workers really have. Workers may still be starting, so each is retried until a
// shared deadline; one that never answers keeps its configured (or unknown, 0) memory.
#pragma once

#include <vector>

#include "absl/time/time.h"
#include "coordinator/server/group_planner.h"
#include "security/secure_channel.h"

namespace flatfleet::coordinator {

// Fills device_memory_bytes and device (GPU or CPU) of every worker whose memory is 0 from its
// Health reply. Returns how
// many workers answered. `security` is the coordinator's channel security towards workers (TLS,
// cluster secret), as for every other call to them.
int ProbeWorkerMemory(std::vector<WorkerInfo>& workers, absl::Duration timeout,
                      const security::ChannelSecurity& security = {});

}  // namespace flatfleet::coordinator
