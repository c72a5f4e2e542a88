// Token permutation by expert for the MoE block, entirely on the device (no host round trip):
// the (row, slot) pairs of expert_ids [rows, top_k] are sorted by expert, stably (within an
// expert by ascending row), so that each expert's rows are contiguous for the grouped GEMM.
// The result is deterministic (counts by atomics are order-free; positions come from ranks).
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "absl/status/status.h"

namespace flatfleet::cuda {

inline constexpr int64_t kMaxPermutedExperts = 256;

struct MoePermuteArgs {
  // [rows, top_k], each in [0, num_experts) (an id outside is dropped: its inverse_permutation
  // entry is -1 and the permuted rows past expert_offsets[num_experts] get source row -1).
  const int32_t* expert_ids = nullptr;
  int64_t rows = 0;  // 0 still writes expert_offsets (all 0)
  int64_t top_k = 0;
  int64_t num_experts = 0;  // 1 .. kMaxPermutedExperts
  // [num_experts + 1]: expert e owns permuted rows [offsets[e], offsets[e + 1]); offsets[0] = 0.
  int32_t* expert_offsets = nullptr;
  int32_t* permuted_source_row = nullptr;  // [rows * top_k]: the input row each permuted row is
  int32_t* inverse_permutation = nullptr;  // [rows * top_k]: (row, j) -> its permuted position
};

// One single-block kernel (two passes over the ids: count, then place).
absl::Status ComputeMoePermutation(const MoePermuteArgs& args, cudaStream_t stream);

struct MoeGatherArgs {
  const __nv_bfloat16* x = nullptr;  // [source_rows, hidden]
  int64_t source_rows = 0;           // rows of x (for the bound check of the caller's shapes)
  int64_t hidden = 0;
  const int32_t* permuted_source_row = nullptr;  // [permuted_rows], in [0, source_rows) or -1
  int64_t permuted_rows = 0;                     // rows * top_k
  __nv_bfloat16* xp = nullptr;  // [permuted_rows, hidden]; a row with source -1 is zero-filled
};

// xp[p] = x[permuted_source_row[p]]: 16-byte copies when hidden % 8 == 0 and both pointers are
// 16-byte aligned, element copies otherwise.
absl::Status GatherPermutedRows(const MoeGatherArgs& args, cudaStream_t stream);

}  // namespace flatfleet::cuda
