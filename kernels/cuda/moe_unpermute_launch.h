// Raw launcher of the MoE unpermute kernel (moe_unpermute.cu). It checks nothing: callers go
// through UnpermuteMoeOutput (moe_unpermute.h).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace flatfleet::cuda::internal {

inline constexpr int kUnpermuteMaxTopK = 8;

struct UnpermuteParams {
  const void* yp = nullptr;
  bool yp_float32 = false;
  int32_t rows = 0;
  int32_t top_k = 0;  // <= kUnpermuteMaxTopK
  int64_t hidden = 0;
  const int32_t* expert_ids = nullptr;
  const float* expert_weights = nullptr;
  const int32_t* inverse_permutation = nullptr;
  void* out = nullptr;
  bool out_float32 = false;
  bool vectorized = false;  // hidden % 4 == 0 and yp, out aligned to 4 elements
};
cudaError_t LaunchMoeUnpermute(const UnpermuteParams& params, cudaStream_t stream);

}  // namespace flatfleet::cuda::internal
