// The coordinator's memory probe against real workers: each reports its physical RAM in Health,
// and a worker that is not there keeps its unknown (0) memory after the probe's deadline.
#include "coordinator/server/worker_memory_probe.h"

#include <unistd.h>

#include <memory>
#include <vector>

#include "gtest/gtest.h"
#include "worker/serving/continuous_batcher_factory.h"
#include "worker/serving/model_loader.h"
#include "worker/serving/worker_process.h"

namespace flatfleet {
namespace {

TEST(WorkerMemoryProbeTest, FillsUnknownMemoryFromHealth) {
  engine::WorkerProcessOptions options;
  options.metrics_listen_address.clear();
  options.service.model_loader = engine::CpuModelLoader();
  options.service.engine_factory = engine::ContinuousBatcherFactory();
  auto worker = engine::WorkerProcess::Start(std::move(options));
  ASSERT_TRUE(worker.ok()) << worker.status();

  const uint64_t ram = static_cast<uint64_t>(sysconf(_SC_PHYS_PAGES)) * sysconf(_SC_PAGE_SIZE);
  std::vector<coordinator::WorkerInfo> workers = {
      {(*worker)->address(), 0},
      {(*worker)->address(), 12345},  // configured: kept
      {"127.0.0.1:1", 0},             // nobody listens on port 1
  };
  EXPECT_EQ(coordinator::ProbeWorkerMemory(workers, absl::Seconds(2)), 1);
  EXPECT_EQ(workers[0].device_memory_bytes, ram);
  EXPECT_EQ(workers[1].device_memory_bytes, 12345u);
  EXPECT_EQ(workers[2].device_memory_bytes, 0u);
}

}  // namespace
}  // namespace flatfleet
