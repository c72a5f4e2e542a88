// Raw launcher of the rank sum (rank_sum.cu). It checks nothing: callers go through SumRanks
// (rank_sum.h).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cuda/rank_sum.h"

namespace flatfleet::cuda::internal {

struct RankSumParams {
  int num_inputs = 0;
  const void* inputs[kMaxRankSumInputs] = {};
  int64_t count = 0;
  bool bf16 = false;
  void* output = nullptr;
};
cudaError_t LaunchRankSum(const RankSumParams& params, cudaStream_t stream);

}  // namespace flatfleet::cuda::internal
