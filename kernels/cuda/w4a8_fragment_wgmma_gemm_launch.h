// Raw launcher of w4a8_fragment_wgmma_gemm.cu. It checks nothing: callers go through
// GemmW4A8FragmentWgmma, which rejects bad arguments before any launch.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace flatfleet::cuda::internal {

struct W4A8FragmentWgmmaParams {
  const int8_t* x_codes = nullptr;      // [m, k]
  const uint16_t* x_scales = nullptr;   // [m] FP16 bits
  const uint4* w_fragments = nullptr;   // the fragment layout
  const uint2* w_scales = nullptr;      // the fragment layout's scales and zero points
  uint32_t nibble_flip = 0;             // kSignedNibbleFlip or kUnsignedNibbleFlip
  const float* epilogue_add = nullptr;  // [n] or null
  void* y = nullptr;                    // [m, y_stride]
  int64_t y_stride = 0;
  bool y_is_bf16 = false;
  bool y_vectors_aligned = false;  // every 8-channel run of a row starts 16-byte aligned
  int32_t m = 0, n = 0, k = 0, group_size = 0;
  int32_t tokens_per_tile = 128;  // 64 or 128
  int32_t token_parts = 2;        // 2 or 4: wgmma groups a tile's tokens are cut into
  int32_t split = 1;                  // CTAs over K (whole groups each): grid.y
  float* split_partials = nullptr;    // [split, m, n] when split > 1
  int32_t* split_counters = nullptr;  // one per output tile, zero
};
cudaError_t LaunchW4A8FragmentWgmma(const W4A8FragmentWgmmaParams& params, cudaStream_t stream);

}  // namespace flatfleet::cuda::internal
