// StreamCollectives (stream_collectives.h) over a DeviceCommunicator: what a tensor-parallel model
// on the CUDA backend hands its all-reduces and logits gather to. The communicator's collectives
// run on its own stream; when the model's stream is another one, each call forks (the
// communicator's stream waits for an event recorded on the model's) and joins back (the model's
// stream waits for the communicator's), so the order on the model's stream is kept without any
// host synchronisation. Pass the model's stream as the communicator's (NcclCommunicatorOptions::
// stream) to skip the events.
//
// The all-reduce algorithm per call comes from the measured table (all_reduce_choice.h): plain
// NCCL in the data's type, or the INT8-compressed all-reduce (DeviceCompressedAllReducer) for
// float32 data where the table says it is faster and compression is allowed. bfloat16 data (the
// CUDA model's partial sums) always takes the plain bf16 all-reduce: the compressed kernels read
// float32.
//
// CUDA graphs: NCCL collectives can be captured, but the non-blocking communicator's bounded
// waits (ncclInProgress polling) and the one-GPU thread group's host barriers cannot; the model
// therefore runs tensor-parallel steps eagerly (no graphs).
#pragma once

#include <cuda_runtime.h>

#include <memory>
#include <span>

#include "absl/status/statusor.h"
#include "worker/collectives/all_reduce_choice.h"
#include "worker/collectives/device_communicator.h"
#include "worker/collectives/device_compressed_all_reducer.h"
#include "worker/collectives/stream_collectives.h"

namespace flatfleet::collectives {

struct DeviceStreamCollectivesOptions {
  bool compression_allowed = false;  // the group's all_reduce_compression
  int compression_block_size = 128;  // floats per INT8 scale
  std::span<const AllReduceThreshold> thresholds = MeasuredDeviceAllReduceThresholds();
};

class DeviceStreamCollectives final : public StreamCollectives {
 public:
  // `communicator` must outlive this object.
  static absl::StatusOr<std::unique_ptr<DeviceStreamCollectives>> Create(
      DeviceCommunicator& communicator, DeviceStreamCollectivesOptions options = {});
  ~DeviceStreamCollectives() override;
  DeviceStreamCollectives(const DeviceStreamCollectives&) = delete;
  DeviceStreamCollectives& operator=(const DeviceStreamCollectives&) = delete;

  int rank() const override { return communicator_.rank(); }
  int size() const override { return communicator_.size(); }

  absl::Status AllReduceSum(void* data, int64_t count, DeviceElementType type, bool exact,
                            void* stream) override;
  absl::Status GatherColumns(const float* local, int64_t rows, std::span<const int64_t> begins,
                             std::span<const int64_t> widths, float* scratch, float* full,
                             int64_t full_cols, void* stream) override;
  absl::Status Synchronize() override;
  AllReduceStats stats() const override { return stats_; }

  // The algorithm the last non-exact AllReduceSum used (tests).
  AllReduceAlgorithm last_algorithm() const { return last_algorithm_; }

 private:
  DeviceStreamCollectives(DeviceCommunicator& communicator, DeviceStreamCollectivesOptions options)
      : communicator_(communicator), options_(options) {}
  // The communicator's stream waits for the work enqueued so far on `caller`.
  absl::Status Fork(cudaStream_t caller);
  // `caller` waits for the work enqueued so far on the communicator's stream.
  absl::Status Join(cudaStream_t caller);

  DeviceCommunicator& communicator_;
  const DeviceStreamCollectivesOptions options_;
  std::unique_ptr<DeviceCompressedAllReducer> compressed_;  // when compression is allowed
  bool compressed_pending_ = false;  // compressed calls since the last Synchronize
  cudaEvent_t forked_ = nullptr;
  cudaEvent_t joined_ = nullptr;
  AllReduceStats stats_;
  AllReduceAlgorithm last_algorithm_ = AllReduceAlgorithm::kPlain;
};

}  // namespace flatfleet::collectives
