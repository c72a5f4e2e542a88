// Raw launchers of the grouped GEMM kernels (grouped_gemm.cu). They check nothing: callers go
// through GroupedGemm (grouped_gemm.h), which validates the arguments first.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace flatfleet::cuda::internal {

struct GroupedGemmParams {
  const int32_t* expert_offsets = nullptr;  // [num_experts + 1]
  int32_t num_experts = 0;
  int32_t total_rows = 0;  // rows of xp / yp
  int32_t n = 0, k = 0;
  const __nv_bfloat16* xp = nullptr;
  const __nv_bfloat16* weights = nullptr;  // used when weight_pointers is null
  int64_t weight_expert_stride = 0;
  const __nv_bfloat16* const* weight_pointers = nullptr;
  void* yp = nullptr;
  int64_t y_row_stride = 0;  // elements, >= n
  bool y_float32 = false;
};

// Rows per tile of the tensor-core path for this bound on any expert's rows (16, 64 or 128); the
// launch has ceil(total_rows / tile) + min(num_experts, total_rows) row tiles (grid x) and
// ceil(n / kGroupedGemmMinTileColumns) or fewer column tiles (grid y, at most 65535).
int GroupedGemmTileRows(int64_t max_rows_per_expert);
inline constexpr int64_t kGroupedGemmMinTileColumns = 64;
// Tensor cores; `max_rows_per_expert` picks the tile height. Needs k % 8 == 0 and 16-byte
// aligned operands.
cudaError_t LaunchGroupedGemmTensorCore(const GroupedGemmParams& params,
                                        int64_t max_rows_per_expert, cudaStream_t stream);
// Any shape and alignment.
cudaError_t LaunchGroupedGemmSimt(const GroupedGemmParams& params, cudaStream_t stream);

}  // namespace flatfleet::cuda::internal
