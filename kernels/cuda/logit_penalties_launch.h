// Raw launcher of the logit penalty kernel (logit_penalties.cu). It checks nothing: callers go
// through ApplyLogitPenalties (logit_penalties.h).
#pragma once

#include <cuda_runtime.h>

#include "kernels/cuda/logit_penalties.h"

namespace flatfleet::cuda::internal {

// args.logits_row_stride is resolved (never 0).
cudaError_t LaunchLogitPenalties(const LogitPenalties& args, cudaStream_t stream);

}  // namespace flatfleet::cuda::internal
