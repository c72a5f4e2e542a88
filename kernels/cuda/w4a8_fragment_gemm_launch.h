// Raw launchers of w4a8_fragment_gemm.cu. They check nothing: callers go through GemmW4A8Fragment
// and PackW4A8Fragments, which reject bad arguments before any launch.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cuda/w4a8_fragment_layout.h"

#if defined(__CUDACC__)
#define FF_FRAGMENT_CONSTEXPR __host__ __device__ constexpr
#else
#define FF_FRAGMENT_CONSTEXPR constexpr
#endif

namespace flatfleet::cuda::internal {

struct W4A8FragmentParams {
  const int8_t* x_codes = nullptr;      // [m, k]
  const uint16_t* x_scales = nullptr;   // [m] FP16 bits
  const uint4* w_fragments = nullptr;   // the fragment layout
  const uint2* w_scales = nullptr;      // the fragment layout's scales and zero points
  uint32_t nibble_flip = 0;             // kSignedNibbleFlip or kUnsignedNibbleFlip
  bool zero_points = true;              // false: the layer is symmetric (zeros all 0)
  const float* epilogue_add = nullptr;  // [n] or null
  void* y = nullptr;                    // [m, y_stride]
  int64_t y_stride = 0;
  bool y_is_bf16 = false;
  int32_t m = 0, n = 0, k = 0, group_size = 0;
  int32_t split = 1;                  // CTAs over K (whole groups each)
  int32_t blocks_per_warp = 2;        // 1 or 2
  int32_t ring_depth = 4;             // 4, or 8 with one block per warp
  int32_t warps_per_cta = 4;          // 4 or 8
  int32_t weight_stages = 0;          // 0: the register ring; 2..8: shared-memory stages
  float* split_partials = nullptr;    // [split, m, n] when split > 1
  int32_t* split_counters = nullptr;  // one per tile, zero
};
// The activation slices' double buffer (static shared memory) of a kernel for `rows` rows: the
// tokens (8 a set of MMA columns; 1, 2 or 4 sets) by the slice's K chunks, rows padded by 32
// bytes so that the lanes' 8-byte reads hit distinct banks.
FF_FRAGMENT_CONSTEXPR int W4A8FragmentSets(int rows) { return rows > 16 ? 4 : rows > 8 ? 2 : 1; }
FF_FRAGMENT_CONSTEXPR int W4A8FragmentSliceChunks(int sets) { return sets <= 2 ? 16 : 8; }
FF_FRAGMENT_CONSTEXPR int W4A8FragmentActivationBytes(int sets) {
  return 2 * 8 * sets * (W4A8FragmentSliceChunks(sets) * 64 + 32);
}

// The staged path's stage of one warp: per block, ring_depth chunks of 512 bytes of weights, then
// the scale entries (64 bytes a group) of the at most ring_depth / 2 + 1 groups those chunks
// touch (a group is at least 2 chunks). Its dynamic shared memory: one mbarrier per warp and
// stage, then every warp's stages.
FF_FRAGMENT_CONSTEXPR int W4A8FragmentStageGroups(int ring_depth) { return ring_depth / 2 + 1; }
FF_FRAGMENT_CONSTEXPR int W4A8FragmentBlockStageBytes(int ring_depth) {
  return ring_depth * 512 + W4A8FragmentStageGroups(ring_depth) * 64;
}
FF_FRAGMENT_CONSTEXPR int W4A8FragmentStagedBarrierBytes(int warps, int stages) {
  return (warps * stages * 8 + 15) / 16 * 16;
}
FF_FRAGMENT_CONSTEXPR int W4A8FragmentStagedSharedBytes(int warps, int blocks, int ring_depth,
                                                        int stages) {
  return W4A8FragmentStagedBarrierBytes(warps, stages) +
         warps * stages * blocks * W4A8FragmentBlockStageBytes(ring_depth);
}
// A CTA's shared memory limit on sm_90 (the opt-in maximum), static and dynamic together.
inline constexpr int kW4A8FragmentMaxSharedBytes = 232448;

cudaError_t LaunchW4A8Fragment(const W4A8FragmentParams& params, cudaStream_t stream);

// CTAs of the kernel for (rows, warps_per_cta, blocks_per_warp, ring_depth, weight_stages)
// resident per SM of the current device (0 on error).
int W4A8FragmentResidentCtas(int rows, int warps_per_cta, int blocks_per_warp, int ring_depth,
                             int weight_stages = 0);

cudaError_t LaunchPackW4A8Fragments(const DeviceW4A8Source& source, uint32_t* fragments,
                                    uint32_t* fragment_scales, cudaStream_t stream);

}  // namespace flatfleet::cuda::internal

#undef FF_FRAGMENT_CONSTEXPR
