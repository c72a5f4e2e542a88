// Raw launcher of the sampling kernel (sampling.cu). It checks nothing: callers go through
// SampleTokens (sampling.h).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace flatfleet::cuda::internal {

struct SamplingParams {
  const float* logits = nullptr;
  int64_t rows = 0;
  int64_t vocab = 0;
  int64_t row_stride = 0;
  const float* temperature = nullptr;  // each per-row array may be null (its default)
  const int32_t* top_k = nullptr;
  const float* top_p = nullptr;
  const uint64_t* seed = nullptr;
  const uint64_t* step = nullptr;
  int32_t* tokens = nullptr;
  float* logprobs = nullptr;
  const float* processed_logits = nullptr;  // [processed rows, vocab], dense
  const int32_t* processed_row = nullptr;   // [rows]; -1: draw from the raw row
  bool bisection = false;  // the reference threshold search instead of radix select
};
cudaError_t LaunchSampling(const SamplingParams& params, cudaStream_t stream);

}  // namespace flatfleet::cuda::internal
