// cudaError_t to absl::Status, with the call named.
#pragma once

#include <cuda_runtime.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace flatfleet::runtime::cuda {

inline absl::Status CudaStatus(cudaError_t error, const char* what) {
  if (error == cudaSuccess) return absl::OkStatus();
  const absl::StatusCode code = error == cudaErrorMemoryAllocation
                                    ? absl::StatusCode::kResourceExhausted
                                    : absl::StatusCode::kInternal;
  return absl::Status(code, absl::StrCat(what, ": ", cudaGetErrorName(error), " (",
                                         cudaGetErrorString(error), ")"));
}

}  // namespace flatfleet::runtime::cuda

#define FF_CUDA_RETURN_IF_ERROR(expr)                                       \
  do {                                                                      \
    const cudaError_t ff_cuda_error_ = (expr);                              \
    if (ff_cuda_error_ != cudaSuccess)                                      \
      return ::flatfleet::runtime::cuda::CudaStatus(ff_cuda_error_, #expr); \
  } while (false)
