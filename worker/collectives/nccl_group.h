// Joining an NCCL tensor-parallel group from code compiled without CUDA headers (the worker
// service and its model loader, in CUDA builds): rank 0 makes the unique id in OpenRendezvous,
// every rank's LoadShard joins with it. The implementation (nccl_group.cc) is in the CUDA
// collectives library; callers guard their use with FLATFLEET_HAVE_CUDA.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "worker/collectives/stream_collectives.h"

namespace flatfleet::collectives {

// CreateNcclUniqueId (sets NCCL_NVLS_ENABLE=0 unless the environment sets it).
absl::StatusOr<std::string> NewNcclUniqueId();

struct NcclGroupOptions {
  int rank = 0;
  int size = 1;
  std::string unique_id;  // rank 0's NewNcclUniqueId()
  int device = 0;         // this rank's CUDA device
  // Bounds the rendezvous (ncclCommInitRankConfig, non-blocking) and every later wait; past it
  // the communicator is aborted and the caller gets DeadlineExceeded.
  std::chrono::milliseconds timeout{30000};
  bool compression_allowed = false;  // the rendezvous' all_reduce_compression
  int compression_block_size = 128;
};

// Joins (returns once every rank has joined, or the error) and returns the group's device
// collectives, which own the NCCL communicator.
absl::StatusOr<std::unique_ptr<StreamCollectives>> JoinNcclGroup(const NcclGroupOptions& options);

}  // namespace flatfleet::collectives
