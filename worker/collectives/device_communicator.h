// A group of tensor-parallel workers, one GPU each, that exchange DEVICE buffers collectively.
//
// The sibling of Communicator (communicator.h), which works on host spans and returns when the
// data is there. Here every collective is enqueued on the communicator's CUDA stream and returns
// once enqueued: results are ready for later work on that stream, and for the host after
// Synchronize(). Pointers are device memory on device(); sizes are element or byte counts.
//
// Every rank must call the same collectives in the same order with matching sizes. Errors are
// returned, never thrown. A peer that never joins or never calls its side of a collective is
// detected while waiting (Synchronize, Barrier, or an enqueue that has to wait for setup):
// DeadlineExceeded once the communicator's timeout passes; the communicator is then aborted, so
// no kernel keeps spinning. After any error the group is unusable (FailedPrecondition) and must be
// rebuilt by the caller. A communicator serves one calling thread at a time.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "absl/status/status.h"

namespace flatfleet::collectives {

class DeviceCommunicator {
 public:
  virtual ~DeviceCommunicator() = default;

  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual int device() const = 0;
  // Every collective runs on this stream, in call order.
  virtual cudaStream_t stream() const = 0;

  // In place: every rank ends with the element-wise float sum over ranks (identical bits on
  // every rank; the summation order is NCCL's, not necessarily rank order).
  virtual absl::Status AllReduceSum(float* data, int64_t count) = 0;
  // The same over `count` bfloat16 values (__nv_bfloat16) at `data`: the tensor-parallel model's
  // partial sums, half the bytes of float32. Each addition rounds to bfloat16 (NCCL adds pairs in
  // float and rounds; with 2 ranks that is one rounding of the exact sum).
  virtual absl::Status AllReduceSumBFloat16(void* data, int64_t count) = 0;

  // output holds size() * bytes_per_rank bytes; rank r's input lands at output + r * bytes.
  // In place when input == output + rank() * bytes_per_rank.
  virtual absl::Status AllGather(const void* input, int64_t bytes_per_rank, void* output) = 0;

  // input and output hold size() slots of bytes_per_slot bytes; input slot d goes to rank d, and
  // output slot s is what rank s sent here.
  virtual absl::Status AllToAll(const void* input, int64_t bytes_per_slot, void* output) = 0;

  // In place: rank `root`'s bytes are copied to every rank. Sizes must match on all ranks.
  virtual absl::Status Broadcast(void* data, int64_t bytes, int root) = 0;

  // Returns once every rank has reached its Barrier and the stream has drained (bounded).
  virtual absl::Status Barrier() = 0;

  // Waits (bounded by the timeout) until everything enqueued on stream() so far has finished.
  virtual absl::Status Synchronize() = 0;
};

}  // namespace flatfleet::collectives
