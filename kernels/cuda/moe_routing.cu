// Top-k softmax routing, one warp per row: lane l holds experts l and l + 32 (up to 64 experts).
// Every step mirrors cpu::TopKSoftmaxRouting so that only expf's last-ulp differences remain:
//   max, exp(logit - max), a sequential sum in expert order (all lanes walk the exponentials by
//   shuffles and add them in the same order), probs = exp / total, then top_k rounds of a warp
//   argmax (larger probability, then lower index), kept = a sequential sum of the chosen
//   probabilities in selection order, weight = prob / kept.
#include <cuda_runtime.h>

#include <cmath>

#include "kernels/cuda/moe_routing_launch.h"

namespace flatfleet::cuda::internal {
namespace {

constexpr int kWarpsPerBlock = 4;
constexpr unsigned kFullMask = 0xffffffffu;
// Below every probability (they are >= 0): marks lanes without an expert and taken experts.
constexpr float kNotACandidate = -1.0f;

// The host's order: larger probability first, the lower expert index on ties.
__device__ __forceinline__ bool Better(float p, int e, float other_p, int other_e) {
  return p > other_p || (p == other_p && e < other_e);
}

__global__ void __launch_bounds__(kWarpsPerBlock * 32) TopKSoftmaxRoutingKernel(RoutingParams p) {
  const int lane = threadIdx.x % 32;
  const int row = blockIdx.x * kWarpsPerBlock + threadIdx.x / 32;
  if (row >= p.rows) return;  // whole warps only: the kernel uses no block-wide barrier
  const int num_experts = p.num_experts;
  const float* logits = p.logits + static_cast<int64_t>(row) * num_experts;
  const int e0 = lane, e1 = lane + 32;
  const bool has0 = e0 < num_experts, has1 = e1 < num_experts;
  const float logit0 = has0 ? logits[e0] : -INFINITY;
  const float logit1 = has1 ? logits[e1] : -INFINITY;

  float max_logit = fmaxf(logit0, logit1);
  for (int offset = 16; offset > 0; offset /= 2)
    max_logit = fmaxf(max_logit, __shfl_xor_sync(kFullMask, max_logit, offset));
  const float exp0 = has0 ? expf(logit0 - max_logit) : 0.0f;
  const float exp1 = has1 ? expf(logit1 - max_logit) : 0.0f;

  // total += exp[e] for e = 0, 1, ...: the host's order, computed identically by every lane.
  float total = 0.0f;
  for (int e = 0; e < num_experts; ++e) {
    const float from0 = __shfl_sync(kFullMask, exp0, e % 32);
    const float from1 = __shfl_sync(kFullMask, exp1, e % 32);
    total += e < 32 ? from0 : from1;
  }
  float prob0 = has0 ? exp0 / total : kNotACandidate;
  float prob1 = has1 ? exp1 / total : kNotACandidate;

  int my_expert = 0;
  float my_prob = 0.0f;
  float kept = 0.0f;
  for (int i = 0; i < p.top_k; ++i) {
    // This lane's best remaining candidate, then the warp's best (the butterfly leaves the same
    // winner in every lane because Better is a strict total order on distinct indices).
    float best_p = prob0;
    int best_e = e0;
    if (Better(prob1, e1, best_p, best_e)) {
      best_p = prob1;
      best_e = e1;
    }
    for (int offset = 16; offset > 0; offset /= 2) {
      const float other_p = __shfl_xor_sync(kFullMask, best_p, offset);
      const int other_e = __shfl_xor_sync(kFullMask, best_e, offset);
      if (Better(other_p, other_e, best_p, best_e)) {
        best_p = other_p;
        best_e = other_e;
      }
    }
    if (best_e == e0) prob0 = kNotACandidate;
    if (best_e == e1) prob1 = kNotACandidate;
    kept += best_p;
    if (lane == i) {
      my_expert = best_e;
      my_prob = best_p;
    }
  }
  if (lane < p.top_k) {
    const int64_t out = static_cast<int64_t>(row) * p.top_k + lane;
    p.expert_ids[out] = my_expert;
    p.expert_weights[out] = my_prob / kept;
  }
}

}  // namespace

cudaError_t LaunchTopKSoftmaxRouting(const RoutingParams& params, cudaStream_t stream) {
  if (params.rows <= 0) return cudaSuccess;
  const unsigned blocks =
      static_cast<unsigned>((params.rows + kWarpsPerBlock - 1) / kWarpsPerBlock);
  TopKSoftmaxRoutingKernel<<<blocks, kWarpsPerBlock * 32, 0, stream>>>(params);
  return cudaGetLastError();
}

}  // namespace flatfleet::cuda::internal
