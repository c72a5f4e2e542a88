#include "coordinator/server/worker_memory_probe.h"

#include <chrono>
#include <cstdio>
#include <thread>

#include "flatfleet/v1/worker.grpc.pb.h"
#include "grpcpp/grpcpp.h"

namespace flatfleet::coordinator {
namespace {

// True when the worker answered; its memory is then in `worker`.
bool Probe(WorkerInfo& worker, absl::Time deadline, const security::ChannelSecurity& security) {
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
    return false;
  }
  worker.device_memory_bytes = health.device_memory_bytes_total();
  // GPU workers' groups need NCCL; CPU workers (and older ones, UNSPECIFIED) run on the host.
  worker.device = health.collective_backend() == v1::COLLECTIVE_BACKEND_NCCL ? WorkerDevice::kGpu
                                                                             : WorkerDevice::kCpu;
  return true;
}

}  // namespace

int ProbeWorkerMemory(std::vector<WorkerInfo>& workers, absl::Duration timeout,
                      const security::ChannelSecurity& security) {
  const absl::Time deadline = absl::Now() + timeout;
  // All at once: a stalled worker costs the probe one timeout, not one per worker behind it.
  std::vector<char> answered(workers.size(), 0);
  std::vector<std::thread> probes;
  for (size_t i = 0; i < workers.size(); ++i) {
    if (workers[i].device_memory_bytes > 0) continue;
    probes.emplace_back([&, i] { answered[i] = Probe(workers[i], deadline, security) ? 1 : 0; });
  }
  for (std::thread& probe : probes) probe.join();
  int count = 0;
  for (char one : answered) count += one;
  return count;
}

}  // namespace flatfleet::coordinator
