// absl::Status for the result codes of NCCL and the CUDA runtime, naming the failed call.
#pragma once

#include <cuda_runtime.h>
#include <nccl.h>

#include "absl/status/status.h"

namespace flatfleet::collectives {

// ncclSuccess -> OK. ncclInvalidArgument -> InvalidArgument, ncclInvalidUsage ->
// FailedPrecondition, ncclSystemError / ncclRemoteError (sockets, a failed peer) -> Unavailable,
// the rest -> Internal. `comm` (may be null) adds NCCL's last error message.
absl::Status NcclStatus(ncclResult_t result, const char* call, ncclComm_t comm = nullptr);

// cudaSuccess -> OK, anything else -> Internal with CUDA's message.
absl::Status CudaStatus(cudaError_t error, const char* call);

}  // namespace flatfleet::collectives
