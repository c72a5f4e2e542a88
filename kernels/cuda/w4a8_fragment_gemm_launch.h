// Raw launchers of w4a8_fragment_gemm.cu. They check nothing: callers go through GemmW4A8Fragment
// and PackW4A8Fragments, which reject bad arguments before any launch.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cuda/w4a8_fragment_layout.h"

namespace flatfleet::cuda::internal {

struct W4A8FragmentParams {
  const int8_t* x_codes = nullptr;      // [m, k]
  const uint16_t* x_scales = nullptr;   // [m] FP16 bits
  const uint4* w_fragments = nullptr;   // the fragment layout
  const uint2* w_scales = nullptr;      // the fragment layout's scales and zero points
  uint32_t nibble_flip = 0;             // kSignedNibbleFlip or kUnsignedNibbleFlip
  const float* epilogue_add = nullptr;  // [n] or null
  void* y = nullptr;                    // [m, y_stride]
  int64_t y_stride = 0;
  bool y_is_bf16 = false;
  int32_t m = 0, n = 0, k = 0, group_size = 0;
  int32_t split = 1;                  // CTAs over K (whole groups each)
  int32_t blocks_per_warp = 2;        // 1 or 2
  int32_t ring_depth = 4;             // 4, or 8 with one block per warp
  int32_t warps_per_cta = 4;          // 4 or 8
  float* split_partials = nullptr;    // [split, m, n] when split > 1
  int32_t* split_counters = nullptr;  // one per tile, zero
};
cudaError_t LaunchW4A8Fragment(const W4A8FragmentParams& params, cudaStream_t stream);

// CTAs of the kernel for (rows, warps_per_cta, blocks_per_warp, ring_depth) resident per SM of the
// current device (0 on error).
int W4A8FragmentResidentCtas(int rows, int warps_per_cta, int blocks_per_warp, int ring_depth);

cudaError_t LaunchPackW4A8Fragments(const DeviceW4A8Source& source, uint32_t* fragments,
                                    uint32_t* fragment_scales, cudaStream_t stream);

}  // namespace flatfleet::cuda::internal
