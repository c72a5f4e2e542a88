// A DeviceCommunicator whose ranks are threads of this process sharing ONE GPU (each rank its own
// stream), so the device tensor-parallel code path runs and is tested on a single-GPU machine.
// NCCL refuses two ranks on one device; this backend does not need it.
//
// Every collective is a two-phase exchange through host barriers: each rank records an event on
// its stream and publishes its pointers; after the first barrier every rank makes its stream wait
// for the others' events and enqueues its reads of their buffers (a rank-order sum kernel,
// kernels/cuda/rank_sum.h, or device-to-device copies) into its own memory; after the second
// barrier it waits for the others' reads before later work may overwrite what they read. Sums
// are float32 additions in rank order, so every rank gets identical bits. The host barriers make
// calls block until every rank has called (bounded by the timeout: DeadlineExceeded, after which
// the whole group is broken) and keep them out of CUDA graph capture. For tests and tools only.
#pragma once

#include <cuda_runtime.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "worker/collectives/device_communicator.h"

namespace flatfleet::collectives {

class DeviceThreadGroupCommunicator;

// The shared state of one group: create it once, then give Rank(r) to the thread of rank r.
class DeviceThreadGroup {
 public:
  // `size` ranks (1..16) on `device`, each with its own non-blocking stream.
  static absl::StatusOr<std::unique_ptr<DeviceThreadGroup>> Create(
      int size, int device, std::chrono::milliseconds timeout = std::chrono::seconds(60));
  ~DeviceThreadGroup();

  int size() const { return static_cast<int>(ranks_.size()); }
  DeviceThreadGroupCommunicator& Rank(int rank) { return *ranks_[rank]; }

 private:
  friend class DeviceThreadGroupCommunicator;
  struct Slot {
    const void* input = nullptr;
    void* output = nullptr;
    cudaEvent_t ready = nullptr;  // the rank's inputs are written
    cudaEvent_t done = nullptr;   // the rank has finished reading the others' buffers
  };
  DeviceThreadGroup(int device, std::chrono::milliseconds timeout)
      : device_(device), timeout_(timeout) {}
  // Blocks until all ranks have arrived (or the timeout: then the group is broken for everyone).
  absl::Status Arrive(int rank);

  const int device_;
  const std::chrono::milliseconds timeout_;
  std::vector<std::unique_ptr<DeviceThreadGroupCommunicator>> ranks_;
  std::vector<Slot> slots_;  // written by its own rank before a barrier, read by all after it
  absl::Mutex mutex_;
  int arrived_ ABSL_GUARDED_BY(mutex_) = 0;
  int64_t generation_ ABSL_GUARDED_BY(mutex_) = 0;
  absl::Status broken_ ABSL_GUARDED_BY(mutex_);
};

class DeviceThreadGroupCommunicator final : public DeviceCommunicator {
 public:
  ~DeviceThreadGroupCommunicator() override;

  int rank() const override { return rank_; }
  int size() const override { return group_.size(); }
  int device() const override { return group_.device_; }
  cudaStream_t stream() const override { return stream_; }

  absl::Status AllReduceSum(float* data, int64_t count) override;
  absl::Status AllReduceSumBFloat16(void* data, int64_t count) override;
  absl::Status AllGather(const void* input, int64_t bytes_per_rank, void* output) override;
  absl::Status AllToAll(const void* input, int64_t bytes_per_slot, void* output) override;
  absl::Status Broadcast(void* data, int64_t bytes, int root) override;
  absl::Status Barrier() override;
  absl::Status Synchronize() override;

 private:
  friend class DeviceThreadGroup;
  DeviceThreadGroupCommunicator(DeviceThreadGroup& group, int rank) : group_(group), rank_(rank) {}
  absl::Status Initialize();
  // Publishes (input, output), waits for every rank, runs `reads` (which may use every slot), and
  // waits for every rank's reads to be enqueued and ordered before this stream's later work.
  template <typename Reads>
  absl::Status Exchange(const void* input, void* output, Reads&& reads);
  absl::Status AllReduce(void* data, int64_t count, bool bf16);
  // Scratch for an all-reduce's sum (never overlapping a peer's buffer), grown on demand (the
  // stream is drained first, so no queued kernel still uses the old one).
  absl::StatusOr<void*> Scratch(int64_t bytes);

  DeviceThreadGroup& group_;
  const int rank_;
  cudaStream_t stream_ = nullptr;
  void* scratch_ = nullptr;
  int64_t scratch_bytes_ = 0;
};

}  // namespace flatfleet::collectives
