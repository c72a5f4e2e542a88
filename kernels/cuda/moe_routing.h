// Mixtral routing on the GPU: softmax over the router logits, the top-k experts by decreasing
// weight (lower index first on ties), their weights renormalised to sum 1. The numerics of
// cpu::TopKSoftmaxRouting (kernels/cpu/moe_routing.h): the same max subtraction, a sequential
// float32 sum of the exponentials in expert order, the same divisions and the same sequential
// sum of the kept probabilities. Only expf may differ from the host's by an ulp or two, so the
// chosen experts are identical except at near-ties and the weights agree to ~1e-6 relative.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "absl/status/status.h"

namespace flatfleet::cuda {

inline constexpr int64_t kMaxRoutedExperts = 64;
inline constexpr int64_t kMaxRoutingTopK = 8;

struct MoeRoutingArgs {
  const float* router_logits = nullptr;  // [rows, num_experts], float32
  int64_t rows = 0;                      // 0: nothing to do
  int64_t num_experts = 0;               // 1 .. kMaxRoutedExperts
  int64_t top_k = 0;                     // 1 .. min(kMaxRoutingTopK, num_experts)
  int32_t* expert_ids = nullptr;         // [rows, top_k]: by decreasing weight
  float* expert_weights = nullptr;       // [rows, top_k]: sum to 1 per row
};

// Validates (InvalidArgument naming the field) and enqueues one kernel on `stream`.
absl::Status TopKSoftmaxRouting(const MoeRoutingArgs& args, cudaStream_t stream);

}  // namespace flatfleet::cuda
