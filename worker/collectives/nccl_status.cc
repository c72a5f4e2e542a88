#include "worker/collectives/nccl_status.h"

#include <string>

#include "absl/strings/str_format.h"

namespace flatfleet::collectives {

absl::Status NcclStatus(ncclResult_t result, const char* call, ncclComm_t comm) {
  if (result == ncclSuccess) return absl::OkStatus();
  std::string message = absl::StrFormat("%s: %s", call, ncclGetErrorString(result));
  const char* detail = comm != nullptr ? ncclGetLastError(comm) : nullptr;
  if (detail != nullptr && detail[0] != '\0') absl::StrAppendFormat(&message, " (%s)", detail);
  switch (result) {
    case ncclInvalidArgument:
      return absl::InvalidArgumentError(message);
    case ncclInvalidUsage:
      return absl::FailedPreconditionError(message);
    case ncclSystemError:
    case ncclRemoteError:
      return absl::UnavailableError(message);
    default:
      return absl::InternalError(message);
  }
}

absl::Status CudaStatus(cudaError_t error, const char* call) {
  if (error == cudaSuccess) return absl::OkStatus();
  return absl::InternalError(
      absl::StrFormat("%s: %s (%s)", call, cudaGetErrorString(error), cudaGetErrorName(error)));
}

}  // namespace flatfleet::collectives
