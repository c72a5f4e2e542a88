// Backend-independent numerics of the INT8-compressed all-reduce, as a pure function.
//
// Any implementation (Gloo here, NCCL/CUDA later) must reproduce every field exactly:
//   1. each rank r quantizes its input into Int8Blocks (see int8_blocks.h);
//   2. per element, sum = +0.0f, then for r = 0, 1, ..., size-1 in order:
//      sum = sum + float(q_r) * scale_r  (separately rounded, no fused multiply-add);
//   3. the sums are requantized per block with fresh scales ("reduced");
//   4. every rank outputs float(q_reduced) * scale_reduced.
// Blocks never straddle ranks' chunks, so the result does not depend on how blocks are assigned
// to ranks for the reduction.
//
// Error bound per element i of block b, before float rounding:
//   |output_i - sum_r x_{r,i}| <= sum_r scale_{r,b} / 2 + scale_reduced_b / 2.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/collectives/int8_blocks.h"

namespace flatfleet::collectives {

struct CompressedAllReduceTrace {
  std::vector<Int8Blocks> rank_inputs;  // step 1, one per rank
  std::vector<float> sums;              // step 2
  Int8Blocks reduced;                   // step 3
  std::vector<float> output;            // step 4, identical on every rank
};

// `inputs[r]` is rank r's vector; all must have the same length and be finite.
absl::StatusOr<CompressedAllReduceTrace> CompressedAllReduceReference(
    const std::vector<std::vector<float>>& inputs, int block_size);

// The analytic bound above for one element (without float rounding slack).
float CompressedAllReduceErrorBound(const CompressedAllReduceTrace& trace, int block_size,
                                    int64_t element);

}  // namespace flatfleet::collectives
