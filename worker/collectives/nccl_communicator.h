// DeviceCommunicator over NCCL (one GPU per rank; NVLink, PCIe or network, whatever NCCL finds).
//
// Rank 0 makes a unique id (CreateNcclUniqueId) and hands its bytes to every rank through the
// rendezvous (the coordinator's OpenRendezvous answer carries them as `nccl_unique_id`); each rank
// then calls NcclCommunicator::Create with the same id, its rank and its device.
//
// Waits are bounded: the communicator is non-blocking (ncclConfig_t::blocking = 0), so setup and
// enqueues never block inside NCCL; whenever this class waits (rendezvous, an enqueue that is
// still connecting, Synchronize, Barrier) it polls the stream and ncclCommGetAsyncError against a
// deadline and calls ncclCommAbort when the deadline passes or NCCL reports an error. A peer that
// never joins or never enqueues its side therefore yields DeadlineExceeded, not a hang.
#pragma once

#include <cuda_runtime.h>
#include <nccl.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "worker/collectives/device_communicator.h"

namespace flatfleet::collectives {

// Sets NCCL_NVLS_ENABLE=0 unless the environment already sets it (once per process; called by
// CreateNcclUniqueId and NcclCommunicator::Create before NCCL initialises).
void DisableNvlsUnlessSet();

// A fresh NCCL unique id as NCCL_UNIQUE_ID_BYTES (128) bytes; rank 0 calls this once per group.
absl::StatusOr<std::string> CreateNcclUniqueId();

struct NcclCommunicatorOptions {
  int rank = 0;
  int size = 1;
  std::string unique_id;  // the bytes of CreateNcclUniqueId() on rank 0
  int device = 0;         // CUDA device ordinal of this rank
  // Bounds the rendezvous and every wait; a silent peer becomes DeadlineExceeded after this.
  std::chrono::milliseconds timeout{60000};
  // Stream the collectives run on (caller-owned, on `device`). Null: the communicator creates a
  // non-blocking stream of its own.
  cudaStream_t stream = nullptr;
};

class NcclCommunicator final : public DeviceCommunicator {
 public:
  // Joins the group; returns once every rank has joined, or DeadlineExceeded after the timeout.
  static absl::StatusOr<std::unique_ptr<NcclCommunicator>> Create(
      const NcclCommunicatorOptions& options);
  // Drains the stream and finalizes the communicator (bounded); aborts it if that fails.
  ~NcclCommunicator() override;
  NcclCommunicator(const NcclCommunicator&) = delete;
  NcclCommunicator& operator=(const NcclCommunicator&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  int device() const override { return device_; }
  cudaStream_t stream() const override { return stream_; }

  absl::Status AllReduceSum(float* data, int64_t count) override;
  absl::Status AllReduceSumBFloat16(void* data, int64_t count) override;
  absl::Status AllGather(const void* input, int64_t bytes_per_rank, void* output) override;
  absl::Status AllToAll(const void* input, int64_t bytes_per_slot, void* output) override;
  absl::Status Broadcast(void* data, int64_t bytes, int root) override;
  absl::Status Barrier() override;
  absl::Status Synchronize() override;

 private:
  using Clock = std::chrono::steady_clock;

  explicit NcclCommunicator(const NcclCommunicatorOptions& options);
  absl::Status Initialize(const NcclCommunicatorOptions& options);

  // Checks the group is usable, makes the device current, runs `enqueue` (NCCL calls returning
  // ncclResult_t) and waits out an ncclInProgress answer.
  template <typename Enqueue>
  absl::Status Run(const char* call, Enqueue&& enqueue);
  // Polls ncclCommGetAsyncError until the communicator leaves ncclInProgress or the deadline.
  absl::Status WaitWhileInProgress(const char* call, Clock::time_point deadline);
  // Aborts the communicator and remembers `error`; every later call fails with it.
  absl::Status Fail(absl::Status error);

  const int rank_;
  const int size_;
  const int device_;
  const std::chrono::milliseconds timeout_;
  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_ = nullptr;
  bool owns_stream_ = false;
  cudaEvent_t done_ = nullptr;     // recorded by Synchronize
  float* barrier_word_ = nullptr;  // device scratch for Barrier's all-reduce
  absl::Status broken_;            // first error; once set every call fails
};

}  // namespace flatfleet::collectives
