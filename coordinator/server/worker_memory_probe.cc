#include "coordinator/server/worker_memory_probe.h"

#include <chrono>
#include <cstdio>

#include "flatfleet/v1/worker.grpc.pb.h"
#include "grpcpp/grpcpp.h"

namespace flatfleet::coordinator {

int ProbeWorkerMemory(std::vector<WorkerInfo>& workers, absl::Duration timeout,
                      const security::ChannelSecurity& security) {
  const absl::Time deadline = absl::Now() + timeout;
  int answered = 0;
  for (WorkerInfo& worker : workers) {
    if (worker.device_memory_bytes > 0) continue;
    auto stub = v1::WorkerService::NewStub(security::MakeSecureChannel(worker.address, security));
    grpc::ClientContext context;
    // Waits for the worker to come up (within the deadline) instead of failing at once.
    context.set_wait_for_ready(true);
    context.set_deadline(absl::ToChronoTime(deadline));
    v1::HealthResponse health;
    grpc::Status status = stub->Health(&context, v1::HealthRequest(), &health);
    if (!status.ok()) {
      std::fprintf(stderr,
                   "coordinator: worker %s did not report its memory (%s); planning as if the "
                   "model fits it\n",
                   worker.address.c_str(), status.error_message().c_str());
      continue;
    }
    ++answered;
    worker.device_memory_bytes = health.device_memory_bytes_total();
  }
  return answered;
}

}  // namespace flatfleet::coordinator
