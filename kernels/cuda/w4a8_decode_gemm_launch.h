// Raw launcher of the decode W4A8 GEMM (w4a8_decode_gemm.cu). It checks nothing: callers go
// through GemmW4A8Decode (w4a8_decode_gemm.h), which rejects bad arguments before any launch.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace flatfleet::cuda::internal {

enum class W4A8DecodeVariant { kNarrow, kWide, kSimple, kSplitK, kStreaming, kPipelined };

// kStreaming keeps its CTA's scales and zero points in static shared memory: at most this many
// groups (k / group_size) per row.
inline constexpr int kW4A8StreamingMaxGroups = 512;

struct W4A8DecodeParams {
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
  int32_t m = 0, n = 0, k = 0, group_size = 0;
  W4A8DecodeVariant variant = W4A8DecodeVariant::kNarrow;
  int32_t split = 1;                // kSplitK: warps per CTA (2, 4 or 8); group_size % 128 == 0
  int32_t pipelined_channels = 16;  // kPipelined: output channels per CTA, 16 or 32
};
cudaError_t LaunchW4A8Decode(const W4A8DecodeParams& params, cudaStream_t stream);

// Warps of the split-K kernel (bf16 output) resident per SM of the current device, from
// cudaOccupancyMaxActiveBlocksPerMultiprocessor (0 on error): what W4A8SplitResidentWarpsPerSm
// must say.
int W4A8SplitKernelResidentWarps(int split);

// The streaming kernel (w4a8_decode_streaming.cu): group_size % 128 == 0 and at most
// kW4A8StreamingMaxGroups groups, else cudaErrorInvalidValue.
cudaError_t LaunchW4A8DecodeStreaming(const W4A8DecodeParams& params, cudaStream_t stream);
// CTAs of the streaming kernel (bf16 output; for m > 8 when high_rows, else m <= 8) resident per
// SM of the current device (0 on error), and what its __launch_bounds__ ask for (2 and 3).
int W4A8StreamingKernelResidentCtas(bool high_rows);
int W4A8StreamingExpectedResidentCtas(bool high_rows);

// The pipelined kernel (w4a8_decode_pipelined.cu): group_size % 128 == 0 and
// pipelined_channels 16 or 32, else cudaErrorInvalidValue. Its dynamic shared memory above 48 KB
// is opted into once per device and kernel (cudaFuncSetAttribute under a lock).
cudaError_t LaunchW4A8DecodePipelined(const W4A8DecodeParams& params, cudaStream_t stream);
// CTAs of the pipelined kernel (bf16 output; m > 8 when high_rows) resident per SM of the current
// device (0 on error), and the minimum its __launch_bounds__ ask for (4 for 16 channels per CTA,
// 3 for 32).
int W4A8PipelinedKernelResidentCtas(int channels, bool high_rows);
int W4A8PipelinedExpectedResidentCtas(int channels);

}  // namespace flatfleet::cuda::internal
