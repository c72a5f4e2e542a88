// The INT8-compressed all-reduce over device memory, on any DeviceCommunicator (NCCL in practice).
//
// Same algorithm and the same bits as the CPU CompressedAllReducer / CompressedAllReduceReference
// (compressed_all_reduce_reference.h): quantize per block (scale = absmax / 127, ties to even);
// all-to-all so that rank r receives every rank's codes and scales of the blocks it owns; add them
// up in FP32 in rank order without FMA; requantize; all-gather the reduced chunks; dequantize.
// Kernels: kernels/cuda/int8_block_all_reduce.h. Everything is enqueued on the communicator's
// stream; Synchronize() waits (bounded) and reports errors found on the device.
#pragma once

#include <cstdint>
#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/cuda/int8_block_all_reduce.h"
#include "worker/collectives/all_reduce_stats.h"
#include "worker/collectives/device_communicator.h"
#include "worker/collectives/int8_blocks.h"

namespace flatfleet::collectives {

struct DeviceCompressedAllReduceOptions {
  bool enabled = true;   // false: a plain FP32 DeviceCommunicator::AllReduceSum
  int block_size = 128;  // floats per scale
};

class DeviceCompressedAllReducer {
 public:
  // `communicator` must outlive the reducer. At most 16 ranks (the reduce kernel keeps one scale
  // per rank in registers).
  static absl::StatusOr<std::unique_ptr<DeviceCompressedAllReducer>> Create(
      DeviceCommunicator& communicator, DeviceCompressedAllReduceOptions options);
  // Frees its scratch in stream order (no device synchronisation).
  ~DeviceCompressedAllReducer();
  DeviceCompressedAllReducer(const DeviceCompressedAllReducer&) = delete;
  DeviceCompressedAllReducer& operator=(const DeviceCompressedAllReducer&) = delete;

  // Enqueues an in-place all-reduce of `count` floats at `data` (device memory, every rank the
  // same count). Non-finite input does not stop the collective: the affected blocks come out NaN
  // on every rank and Synchronize() reports InvalidArgument on every rank.
  absl::Status AllReduceSum(float* data, int64_t count);

  // Waits for everything enqueued so far (bounded by the communicator's timeout). InvalidArgument
  // if a call since the last Synchronize saw a NaN or infinity (in this rank's input, or in a
  // reduced block: another rank's input, or a sum that overflowed); the output is then undefined.
  absl::Status Synchronize();

  // The reduced codes and scales of the last compressed call, copied to the host (waits for it):
  // for tests against CompressedAllReduceReference.
  absl::StatusOr<Int8Blocks> LastReduced();

  // calls, raw_bytes and wire_bytes (as in the CPU reducer); the seconds stay 0: calls only
  // enqueue.
  const AllReduceStats& stats() const { return stats_; }
  const DeviceCompressedAllReduceOptions& options() const { return options_; }

 private:
  DeviceCompressedAllReducer(DeviceCommunicator& communicator,
                             DeviceCompressedAllReduceOptions options);
  // Grows the two slot buffers (stream-ordered) to hold `bytes` each.
  absl::Status Reserve(int64_t bytes);

  DeviceCommunicator& communicator_;
  const DeviceCompressedAllReduceOptions options_;
  AllReduceStats stats_;
  // Two buffers of `size` slots: `outgoing_` holds the quantized input for the all-to-all, then the
  // reduced chunks (all-gathered in place); `incoming_` receives the all-to-all.
  uint8_t* outgoing_ = nullptr;
  uint8_t* incoming_ = nullptr;
  int64_t capacity_ = 0;
  int32_t* status_ = nullptr;  // cuda::kStatusWords device words
  cuda::Int8ChunkLayout last_layout_;
};

}  // namespace flatfleet::collectives
