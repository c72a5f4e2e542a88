// Raw launcher of the prefill W4A8 GEMM (w4a8_prefill_gemm.cu). It checks nothing: callers go
// through GemmW4A8Prefill (w4a8_prefill_gemm.h), which rejects bad arguments before any launch.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace flatfleet::cuda::internal {

enum class W4A8PrefillVariant {
  kMmaSync128x128,
  kWgmmaExperimental,
  kWgmma64x128TwoPerSm,
  kWgmmaWarpSpecialized,
  kSimple
};

struct W4A8PrefillParams {
  const int8_t* x_codes = nullptr;        // [m, k]
  const uint16_t* x_scales = nullptr;     // [m] FP16 bits
  const uint32_t* w_words = nullptr;      // [n, k / 8] INT4 interleaved
  bool w_unsigned_nibbles = false;        // nibbles hold code + 8
  const uint16_t* w_scales = nullptr;     // [n, groups] FP16 bits
  const int8_t* w_zero_points = nullptr;  // [n, groups] or null
  const float* epilogue_add = nullptr;    // [n] or null
  void* y = nullptr;                      // [m, y_stride]
  int64_t y_stride = 0;                   // elements, >= n
  bool y_is_bf16 = false;
  // y and y_stride allow storing two adjacent outputs (columns 2j, 2j + 1) as one aligned word.
  bool y_pairs_aligned = false;
  // Every group sum is below 2^22 in magnitude (group_size * 127 * max |w - zero| < 2^22): the
  // tensor-core kernel then converts them to float32 with one exact float subtraction.
  bool group_sums_below_2_22 = false;
  int32_t* group_accumulators = nullptr;  // optional [m, n, groups]: kSimple only
  int32_t m = 0, n = 0, k = 0, group_size = 0;
  W4A8PrefillVariant variant = W4A8PrefillVariant::kMmaSync128x128;
};
cudaError_t LaunchW4A8Prefill(const W4A8PrefillParams& params, cudaStream_t stream);
// The wgmma kernels (w4a8_prefill_gemm_wgmma.cu, sm_90a; variant kWgmmaExperimental or
// kWgmma64x128TwoPerSm or kWgmmaWarpSpecialized): k and group_size multiples of 128,
// group_sums_below_2_22, no group_accumulators.
cudaError_t LaunchW4A8PrefillWgmma(const W4A8PrefillParams& params, cudaStream_t stream);

}  // namespace flatfleet::cuda::internal
