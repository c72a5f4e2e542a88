// A group of tensor-parallel workers that exchange host buffers collectively.
//
// Every rank must call the same collectives in the same order with matching sizes. Errors are
// returned, never thrown: a peer that stops answering yields DeadlineExceeded once the
// communicator's timeout passes, a peer whose connection drops yields Unavailable. After any error
// the group is unusable (FailedPrecondition) and must be rebuilt by the caller.
// A communicator serves one calling thread at a time.
//
// Backend: GlooCommunicator (TCP, CPU memory); CompressedAllReducer only needs this interface.
// GPU buffers go through the sibling DeviceCommunicator (device_communicator.h, NCCL), which
// takes device pointers and a CUDA stream instead of host spans.
#pragma once

#include <cstddef>
#include <string>

#include "absl/status/status.h"
#include "absl/types/span.h"

namespace flatfleet::collectives {

class Communicator {
 public:
  virtual ~Communicator() = default;

  virtual int rank() const = 0;
  virtual int size() const = 0;

  // In place: every rank ends with the element-wise sum over ranks. All ranks get identical bits.
  virtual absl::Status AllReduceSum(absl::Span<float> data) = 0;

  // output.size() == size() * input.size(); rank r's input lands at output[r * input.size()].
  virtual absl::Status AllGather(absl::Span<const std::byte> input,
                                 absl::Span<std::byte> output) = 0;

  // input and output hold size() equal slots; slot d of the input goes to rank d, and slot s of
  // the output is what rank s sent here.
  virtual absl::Status AllToAll(absl::Span<const std::byte> input,
                                absl::Span<std::byte> output) = 0;

  // In place: rank `root`'s bytes are copied to every rank. Sizes must match on all ranks.
  virtual absl::Status Broadcast(absl::Span<std::byte> data, int root) = 0;

  virtual absl::Status Barrier() = 0;
};

// Broadcasts a message whose length only `root` knows (e.g. rank 0's step plan): the length goes
// first, then the bytes. On non-root ranks `message` is replaced.
absl::Status BroadcastMessage(Communicator& communicator, std::string& message, int root);

}  // namespace flatfleet::collectives
