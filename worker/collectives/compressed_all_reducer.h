// Tensor-parallel all-reduce whose traffic travels as per-block INT8 (see int8_blocks.h).
//
// Algorithm on `size` ranks: quantize the local partial sums; all-to-all so that rank r receives
// every rank's codes and scales for the blocks it owns (chunk r, whole blocks); dequantize and
// accumulate them in FP32 in rank order; requantize the reduced chunk with fresh scales; all-gather
// the reduced chunks; dequantize. The result equals CompressedAllReduceReference() bit for bit.
// With compression disabled it is a plain FP32 Communicator::AllReduceSum.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "worker/collectives/all_reduce_stats.h"
#include "worker/collectives/communicator.h"
#include "worker/collectives/int8_blocks.h"

namespace flatfleet::collectives {

struct CompressedAllReduceOptions {
  bool enabled = true;
  int block_size = 128;  // floats per scale
};

class CompressedAllReducer {
 public:
  // `communicator` must outlive this object.
  CompressedAllReducer(Communicator& communicator, CompressedAllReduceOptions options);

  // In place; every rank passes the same number of finite floats.
  absl::Status AllReduceSum(absl::Span<float> data);

  const AllReduceStats& stats() const { return stats_; }
  const CompressedAllReduceOptions& options() const { return options_; }
  // The reduced codes and scales of the last compressed call (identical on every rank).
  const Int8Blocks& last_reduced() const { return reduced_; }

 private:
  absl::Status CompressedAllReduce(absl::Span<float> data, double& seconds_communicating);

  Communicator& communicator_;
  CompressedAllReduceOptions options_;
  AllReduceStats stats_;
  // Scratch reused across calls.
  Int8Blocks local_;
  Int8Blocks reduced_;
  std::vector<float> chunk_sums_;
  std::vector<std::byte> scatter_send_;
  std::vector<std::byte> scatter_recv_;
  std::vector<std::byte> gather_send_;
  std::vector<std::byte> gather_recv_;
};

}  // namespace flatfleet::collectives
