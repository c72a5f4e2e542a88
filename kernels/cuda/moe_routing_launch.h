// Raw launcher of the MoE routing kernel (moe_routing.cu). It checks nothing: callers go through
// TopKSoftmaxRouting (moe_routing.h), which validates the arguments first.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace flatfleet::cuda::internal {

struct RoutingParams {
  const float* logits = nullptr;  // [rows, num_experts]
  int32_t rows = 0;
  int32_t num_experts = 0;  // <= 64
  int32_t top_k = 0;        // <= min(8, num_experts)
  int32_t* expert_ids = nullptr;
  float* expert_weights = nullptr;
};
cudaError_t LaunchTopKSoftmaxRouting(const RoutingParams& params, cudaStream_t stream);

}  // namespace flatfleet::cuda::internal
