// The last step of the MoE block: each token's expert outputs, weighted and summed back into
// token order,
//   out[r, :] = sum_j expert_weights[r, j] * Yp[inverse_permutation[r * top_k + j], :],
// accumulated in float32 in the order cpu::ComposeSparseMoe adds them (experts by ascending
// index, acc = fma(y, weight, acc) starting from 0), then rounded once to the output type.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/cuda/gemm_element_type.h"

namespace flatfleet::cuda {

inline constexpr int64_t kMaxUnpermuteTopK = 8;

struct MoeUnpermuteArgs {
  const void* yp = nullptr;  // [rows * top_k, hidden]: the down projection, permuted rows
  GemmElementType yp_type = GemmElementType::kBf16;
  int64_t rows = 0;   // tokens; 0: nothing to do
  int64_t top_k = 0;  // 1 .. kMaxUnpermuteTopK
  int64_t hidden = 0;
  const int32_t* expert_ids = nullptr;           // [rows, top_k]: gives the summation order
  const float* expert_weights = nullptr;         // [rows, top_k]
  const int32_t* inverse_permutation = nullptr;  // [rows, top_k]; entries of -1 are skipped
  void* out = nullptr;                           // [rows, hidden]; must not overlap yp
  GemmElementType out_type = GemmElementType::kBf16;
};

absl::Status UnpermuteMoeOutput(const MoeUnpermuteArgs& args, cudaStream_t stream);

}  // namespace flatfleet::cuda
