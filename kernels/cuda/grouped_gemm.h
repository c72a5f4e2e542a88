// Grouped bf16 GEMM over the experts of an MoE block, with the group boundaries read on the
// device (from ComputeMoePermutation's expert_offsets), so no host round trip:
//   for each expert e: Yp[offsets[e]:offsets[e+1], :] = Xp[offsets[e]:offsets[e+1], :] W_e^T
// with W_e bf16 [n, k] (Hugging Face layout), float32 accumulation, one rounding of the output.
// The grid is sized from host upper bounds only; blocks whose tile lies past their expert's rows
// exit at once and experts without rows cost nothing.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/cuda/gemm_element_type.h"

namespace flatfleet::cuda {

inline constexpr int64_t kMaxGroupedGemmExperts = 256;

enum class GroupedGemmPath {
  kAuto,        // tensor cores when the alignment allows, else SIMT
  kTensorCore,  // mma.sync m16n8k16 bf16 with a cp.async pipeline; refuses what it cannot do
  kSimt,        // one warp per output, plain float FMAs: the simple reference path
};

struct GroupedGemmArgs {
  int64_t num_experts = 0;  // 1 .. kMaxGroupedGemmExperts
  // Rows of xp and yp (rows * top_k): an upper bound of offsets[num_experts] known on the host.
  int64_t total_rows = 0;
  // Optional host bound on any expert's rows (the token count, since a token names an expert
  // at most once): picks tiles that stream each expert's weights once at decode. 0: total_rows.
  // Only the speed depends on it: an expert with more rows simply takes several tiles.
  int64_t max_rows_per_expert = 0;
  int64_t n = 0, k = 0;
  // Device [num_experts + 1], non-decreasing, offsets[0] >= 0, offsets[num_experts] <=
  // total_rows (values outside [0, total_rows] are clamped into it).
  const int32_t* expert_offsets = nullptr;
  const __nv_bfloat16* xp = nullptr;  // [total_rows, k], contiguous rows
  // The weights: either one base with expert e at weights + e * weight_expert_stride (elements;
  // 0 means n * k), e.g. a stacked [E, n, k] tensor, or, when weight_pointers is set, a device
  // array of num_experts pointers to [n, k] matrices.
  const __nv_bfloat16* weights = nullptr;
  int64_t weight_expert_stride = 0;
  const __nv_bfloat16* const* weight_pointers = nullptr;
  void* yp = nullptr;  // [total_rows, n]; rows past offsets[E] are not written
  // Elements between yp's rows (0 means n): the MoE block writes gate and up side by side into
  // one [rows, 2 * intermediate] matrix. Even for bf16 output on the tensor-core path.
  int64_t y_row_stride = 0;
  GemmElementType y_type = GemmElementType::kBf16;
  GroupedGemmPath path = GroupedGemmPath::kAuto;
};

// Tensor-core path requirements (kAuto falls back to SIMT without them, kTensorCore refuses):
// k % 8 == 0, xp and yp 16-byte aligned, and (base weights) weights 16-byte aligned with
// weight_expert_stride % 8 == 0. With weight_pointers each pointer must be 16-byte aligned
// (device memory: not checked). n is free (tails are guarded).
absl::Status GroupedGemm(const GroupedGemmArgs& args, cudaStream_t stream);

}  // namespace flatfleet::cuda
