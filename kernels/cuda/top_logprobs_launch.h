// Raw launcher of the top-logprobs kernel (top_logprobs.cu). It checks nothing: callers go
// through ComputeTopLogprobs (top_logprobs.h).
#pragma once

#include <cuda_runtime.h>

#include "kernels/cuda/top_logprobs.h"

namespace flatfleet::cuda::internal {

// args.logits_row_stride is resolved (never 0).
cudaError_t LaunchTopLogprobs(const TopLogprobs& args, cudaStream_t stream);

}  // namespace flatfleet::cuda::internal
