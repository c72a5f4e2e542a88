// W4A8 GEMM for decode-sized batches (m = 1..16 rows), bound by streaming the INT4 weights, with a
// fused epilogue. Bit-exact with the CPU reference quant::GemmW4A8 (kernels/cpu/quant/
// quantized_gemm.h) followed by AddBias (bias_add.h) with a float32 vector:
//   y[r, j] = round_to_y_type(gemm[r, j] + epilogue_add[j])       (no addition when null)
// where gemm[r, j] is the reference's float32 result (same int32 group sums, same fold order),
// the addition is one float32 rounding and the conversion to bf16 one round-to-nearest-even.
// Every launch is asynchronous on the given stream, allocates nothing and may be graph-captured.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/cuda/gemm_element_type.h"

namespace flatfleet::cuda {

// Which kernel runs. kAuto takes ChooseW4A8DecodeAutoKernel's choice (the pipelined kernel
// wherever it can run, i.e. group_size % 128 == 0; else the narrow kernel); the others force one
// (tests and benchmarks).
// kTensorCoreNarrow is the reference path the split kernel is compared with (the same numerics, one
// warp per 8 channels over all of K). kSimple is a one-thread-per-output reference kernel: slow,
// obviously right, and a fallback should the tensor-core kernels ever be in doubt.
enum class W4A8DecodeKernel {
  kAuto,
  kTensorCoreNarrow,  // one warp per 8 output channels (more warps: small n)
  kTensorCoreWide,    // one warp per 16 output channels (half the activation reads: large n)
  kSimple,
  // Intra-CTA split-K: one CTA per 8 output channels, its `split` warps take interleaved
  // 128-element windows of K and hand their exact int32 window sums to warp 0 through shared
  // memory, which folds them in ascending K order (the reference's order; no workspace). Needs
  // group_size % 128 == 0 (every real model); InvalidArgument otherwise.
  kSplitK,
  // Streaming (w4a8_decode_streaming.cu): one CTA of 8 warps per 8 output channels; the warps
  // take consecutive runs of 4 windows of 128 K elements per stage, load the next stage's
  // weights (4 independent 16-byte loads per lane) before multiplying the current one, and hand
  // their exact int32 window sums to 128 folding threads through shared memory (ascending K
  // order, no workspace). Needs group_size % 128 == 0 and k / group_size <= 512 (every real
  // model); InvalidArgument otherwise.
  kStreaming,
  // Pipelined (w4a8_decode_pipelined.cu, whose header says why the kernels above are slow): one
  // CTA of 4 warps per 16 or 32 output channels (pipelined_channels) over all of K, the weights
  // streamed through a 6-8 stage cp.async ring in shared memory (28-40 KB in flight per CTA,
  // 512 contiguous bytes per warp copy), weights as the MMA's A operand and the tokens as B, the
  // exact int32 window sums folded in ascending K order after each stage's barrier. Needs
  // group_size % 128 == 0 (every real model); InvalidArgument otherwise.
  kPipelined,
};

struct DeviceW4A8DecodeGemm {
  int64_t m = 0;                       // 1..16
  int64_t n = 0;                       // >= 1
  int64_t k = 0;                       // a multiple of 32
  int64_t group_size = 0;              // a multiple of 32 dividing k (k itself: per channel)
  const int8_t* x_codes = nullptr;     // [m, k], row-major (rows k bytes apart), 16-byte aligned
  const uint16_t* x_scales = nullptr;  // [m], FP16 bits
  // [n, k / 8] words in the INT4 interleaved layout (int4_interleaved.h), i.e.
  // PackedInt4Matrix::words, 16-byte aligned.
  const uint32_t* w_words = nullptr;
  // PackedInt4Matrix::signedness: signed nibbles (symmetric) or code + 8 (asymmetric).
  bool w_unsigned_nibbles = false;
  const uint16_t* w_scales = nullptr;     // [n, k / group_size], FP16 bits
  const int8_t* w_zero_points = nullptr;  // [n, k / group_size] signed convention, or null
  const float* epilogue_add = nullptr;    // [n] added to every row, or null
  void* y = nullptr;                      // [m, n] of y_type, rows y_stride elements apart
  int64_t y_stride = 0;                   // 0 means n
  GemmElementType y_type = GemmElementType::kFloat32;
  W4A8DecodeKernel kernel = W4A8DecodeKernel::kAuto;
  // kSplitK only: warps per CTA splitting K, 2, 4 or 8; 0 takes ChooseW4A8DecodeSplit (at
  // least 2).
  int split = 0;
  // kPipelined only: output channels per CTA, 16 or 32; 0 takes ChooseW4A8PipelinedChannels.
  int pipelined_channels = 0;
  // SM count for the heuristics; 0 queries the current device (a host attribute read, no sync).
  int sm_count = 0;
};

// The non-split kernel kAuto runs for n output channels (the narrow one: see the .cc for the
// measurement).
W4A8DecodeKernel ChooseW4A8DecodeKernel(int64_t n);

// How many warps of a CTA kAuto splits K over (1: no split, the narrow kernel) for an m x n x k
// problem on `sm_count` SMs: the largest of 2, 4, 8 whose ceil(n / 8) CTAs all fit on the GPU at
// once (one wave: ceil(n / 8) * split <= W4A8SplitResidentWarpsPerSm(split) * sm_count) and leave
// every warp at least kW4A8SplitMinWindowsPerWarp windows of 128 K elements; 1 when none does or
// group_size % 128 != 0. The table for an H200 is in docs/GPU_ENGINE.md. m does not enter (the
// kernels' registers, hence residency, do not depend on it; its effect on speed is unmeasured).
inline constexpr int64_t kW4A8SplitMinWindowsPerWarp = 2;
// Warps of the split-K kernel resident per SM on sm_90 (its registers: 96, 90, 110 for split 2,
// 4, 8; a GPU test checks these against cudaOccupancyMaxActiveBlocksPerMultiprocessor).
constexpr int W4A8SplitResidentWarpsPerSm(int split) {
  return split == 2 ? 20 : split == 4 ? 20 : split == 8 ? 16 : 0;
}
int ChooseW4A8DecodeSplit(int64_t m, int64_t n, int64_t k, int64_t group_size, int sm_count);

// Whether kStreaming can run the shape: group_size % 128 == 0 and k / group_size <= 512.
bool W4A8StreamingSupports(int64_t k, int64_t group_size);

// Whether kPipelined can run the shape: group_size % 128 == 0 (k is a multiple of group_size).
bool W4A8PipelinedSupports(int64_t k, int64_t group_size);

// Output channels per CTA of kPipelined: 32 above 8 rows, or when ceil(n / 32) CTAs still give
// every SM at least two (n >= 64 * sm_count: 8448 on an H200), else 16.
int ChooseW4A8PipelinedChannels(int64_t m, int64_t n, int sm_count);
// Where kAuto takes kPipelined (given W4A8PipelinedSupports), as measured on the H200: n >= 8192
// and n * k >= 8192 * 8192, at more than 8 rows, or at 5..8 rows with k <= 8192 too.
bool W4A8PipelinedWins(int64_t m, int64_t n, int64_t k);

// The kernel kAuto runs (never kAuto): kPipelined where W4A8PipelinedSupports and
// W4A8PipelinedWins, else the previous rule, which W4A8DecodePreviousAutoKernel returns (and the
// benchmark names): kStreaming when W4A8StreamingSupports and n < 14336, k > 2048, and k >= 2n
// above 8 rows, else kSplitK when ChooseW4A8DecodeSplit says 2 or more, else
// ChooseW4A8DecodeKernel(n). The table is in docs/GPU_ENGINE.md.
W4A8DecodeKernel ChooseW4A8DecodeAutoKernel(int64_t m, int64_t n, int64_t k, int64_t group_size,
                                            int sm_count);
W4A8DecodeKernel W4A8DecodePreviousAutoKernel(int64_t m, int64_t n, int64_t k, int64_t group_size,
                                              int sm_count);

// Validates (InvalidArgument naming the field, OutOfRange when int32 could overflow) and enqueues
// on `stream`.
absl::Status GemmW4A8Decode(const DeviceW4A8DecodeGemm& args, cudaStream_t stream);

}  // namespace flatfleet::cuda
