// Raw launchers of the MoE permutation kernels (moe_permute.cu). They check nothing: callers go
// through ComputeMoePermutation / GatherPermutedRows (moe_permute.h).
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace flatfleet::cuda::internal {

inline constexpr int kPermuteMaxExperts = 256;

struct PermuteParams {
  const int32_t* expert_ids = nullptr;  // [rows * top_k]
  int32_t total = 0;                    // rows * top_k
  int32_t top_k = 0;
  int32_t num_experts = 0;  // <= kPermuteMaxExperts
  int32_t* expert_offsets = nullptr;
  int32_t* permuted_source_row = nullptr;
  int32_t* inverse_permutation = nullptr;
};
cudaError_t LaunchMoePermute(const PermuteParams& params, cudaStream_t stream);

struct GatherParams {
  const __nv_bfloat16* x = nullptr;
  int64_t hidden = 0;
  const int32_t* permuted_source_row = nullptr;
  int32_t permuted_rows = 0;
  __nv_bfloat16* xp = nullptr;
  bool vectorized = false;  // hidden % 8 == 0 and x, xp 16-byte aligned
};
cudaError_t LaunchGatherRows(const GatherParams& params, cudaStream_t stream);

}  // namespace flatfleet::cuda::internal
