// W4A8 GEMM for mid-sized batches (17..256 rows: many requests decoding together, short prefill
// chunks), where streaming the INT4 weights and the INT8 MMAs both weigh (see kAuto below) and
// the prefill GEMM's 128 x 128 tiles leave SMs idle, with the fused epilogue of the prefill GEMM.
// Any m >= 1 is computed correctly. Bit-exact with the CPU reference quant::GemmW4A8
// (kernels/cpu/quant/quantized_gemm.h) followed by AddBias (bias_add.h) with a float32 vector:
//   y[r, j] = round_to_y_type(gemm[r, j] + epilogue_add[j])       (no addition when null)
// where gemm[r, j] is the reference's float32 result (same int32 group sums, same fold order):
// every block walks all of K for its outputs, so there is no split-K and no workspace. (Why no
// split-K: an exact split must hand over one int32 per output and group, 4 m bytes per column and
// group of 128, against the 64 bytes of that group's weights: more traffic than the weights from
// m = 17 rows on. A float32 split would change the fold order. Small tiles fill the GPU instead.)
// Every launch is asynchronous on the given stream, allocates nothing and may be graph-captured.
//
// The kernel is the prefill GEMM's mma.sync kernel (w4a8_mma_sync_tile.cuh) with 64-row tiles
// and deeper cp.async rings: rows past m are masked, 17..64 rows take one tile row, and all warps
// of a block read the weight tile once from global memory (the 128 x 128 tile: two 64-row warp
// rows share it).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/cuda/gemm_element_type.h"

namespace flatfleet::cuda {

// The rows the engine runs through GemmW4A8Midm (decode takes 1..16; prefill from 257 on).
inline constexpr int64_t kW4A8MidmMinRows = 17;
inline constexpr int64_t kW4A8MidmMaxRows = 256;

// Which kernel runs. kAuto takes ChooseW4A8MidmKernel's choice. The kMma* tiles (rows x columns
// of outputs per block, its cp.async ring depth, blocks per SM) need group sums below 2^22
// (group_size * 127 * 7, or * 15 with zero points, < 2^22: groups up to 4704, or 2176 with zero
// points), else InvalidArgument; kAuto then runs kPrefillMmaSync. kSimple is the prefill GEMM's
// one-thread-per-output reference kernel: slow, obviously right, a fallback should a tensor-core
// kernel ever be in doubt.
enum class W4A8MidmKernel {
  kAuto,
  kMma64x32,    // 4 warps of 16 x 32, 8 stages (11.5 KiB each), 2 blocks per SM
  kMma64x64,    // 4 warps of 32 x 32, 7 stages (14 KiB each), 2 blocks per SM
  kMma64x128,   // 4 warps of 64 x 32, 5 stages (19 KiB each), 2 blocks per SM
  kMma128x128,  // 8 warps of 64 x 32, 6 stages (28 KiB each), 1 block per SM
  // The prefill GEMM's kMmaSync128x128 (4 stages; any group size, conversion-unit path for
  // large groups).
  kPrefillMmaSync,
  // GemmW4A8Prefill with its kAuto: the wgmma kernel on Hopper where it applies (faster than
  // the mma.sync kernels on full 128-row tiles), else kMmaSync128x128.
  kPrefillAuto,
  kSimple,
};

struct DeviceW4A8MidmGemm {
  int64_t m = 0;                       // >= 1 (17..256 is what it is for)
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
  W4A8MidmKernel kernel = W4A8MidmKernel::kAuto;
  // SM count for kAuto; 0 queries the current device (a host attribute read, no sync).
  int sm_count = 0;
};

// Output rows x columns of one block of a kMma* kernel ({0, 0} for the others).
struct W4A8MidmTileShape {
  int64_t rows = 0, cols = 0;
};
W4A8MidmTileShape W4A8MidmTile(W4A8MidmKernel kernel);

// Whether the kMma* kernels can run: group sums below 2^22 (see above).
bool W4A8MidmSupports(int64_t group_size, bool zero_points);

// The kernel kAuto runs (never kAuto). At these row counts the mma.sync kernels are bound by the
// INT8 MMAs as much as by the weights (64 rows are 256 operations per weight byte: 1 POP/s at 4
// TB/s), so what counts is every SM busy and no MMA wasted: kPrefillAuto where prefill_wgmma (the
// prefill GEMM would run wgmma: Hopper, k and group_size multiples of 128, group sums below 2^22)
// and its 128-row tiles are at least 3/4 full (m in 96..128 or 192..256) and give at least 45% of
// sm_count a block (measured faster there, bench/RESULTS.md session 6); else the widest tile that
// still gives at least 9/10 of sm_count blocks (a block's activation reads from L2 are 2 m / cols
// times its weight bytes), trying 128 x 128 (only above 64 rows), 64 x 128, 64 x 64, and 64 x 32
// when none does. kPrefillMmaSync when !W4A8MidmSupports. On an H200 (132 SMs), group 128, by n:
//   4096            17..64: 64 x 32, 65..191: 64 x 64, 192..256: prefill
//   6144            17..64: 64 x 32, 65..128: 64 x 64, 129..191: 64 x 128, 192..256: prefill
//   8192..57344     17..64: 64 x 64 (64 x 128 from 28672), 65..95: 64 x 128 (128 x 128 from
//                   28672), 96..128: prefill, 129..191: 128 x 128, 192..256: prefill
// (without wgmma, 128 x 128 where it says prefill; a host test checks this table).
W4A8MidmKernel ChooseW4A8MidmKernel(int64_t m, int64_t n, int64_t group_size, bool zero_points,
                                    int sm_count, bool prefill_wgmma);

// Validates (InvalidArgument naming the field, OutOfRange when int32 could overflow) and enqueues
// on `stream`.
absl::Status GemmW4A8Midm(const DeviceW4A8MidmGemm& args, cudaStream_t stream);

}  // namespace flatfleet::cuda
