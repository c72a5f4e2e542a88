// W4A8 GEMM for prefill-sized batches (m >= 64 rows; any m >= 1 is computed correctly), bound by
// the INT8 tensor cores, with a fused epilogue. Bit-exact with the CPU reference quant::GemmW4A8
// (kernels/cpu/quant/quantized_gemm.h) followed by AddBias (bias_add.h) with a float32 vector,
// i.e. with GemmW4A8 (int8_gemm.h) + AddBias on the GPU:
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

// From this many rows on the engine runs GemmW4A8Prefill (fewer rows leave most of a 128-row
// tile empty; GemmW4A8's 64 x 64 tiles serve 17..63 rows).
inline constexpr int64_t kW4A8PrefillMinRows = 64;

// Which kernel runs. kAuto is the wgmma kernel on Hopper (compute capability 9.0) when its
// preconditions hold (k and group_size multiples of 128, group sums below 2^22, no
// group_accumulators), else the mma.sync kernel. kSimple is a one-thread-per-output reference
// kernel: slow, obviously right, the only one that writes group_accumulators, and a fallback
// should a tensor-core kernel ever be in doubt.
enum class W4A8PrefillKernel {
  kAuto,
  kMmaSync128x128,  // mma.sync m16n8k32, 128 x 128 tiles, 8 warps, 4-stage cp.async ring
  kSimple,
  // wgmma m64n128k32 (sm_90a builds on Hopper only), 128 x 128 tiles of two warpgroups. Needs k
  // and group_size multiples of 128 and group sums that stay below 2^22 (group_size * 127 * 7,
  // or * 15 with zero points, < 2^22: groups up to 4608, or 2176 with zero points), else
  // InvalidArgument. The name is historical: kAuto chooses it where it applies.
  kWgmmaExperimental,
  // kWgmmaExperimental's code with one warpgroup and 64 x 128 outputs a block, two blocks per SM
  // that no barrier couples (each one's fold and unpack overlap the other's wgmmas), at the cost
  // of each block unpacking its own weight tiles. Same preconditions; not chosen by kAuto until
  // measured faster.
  kWgmma64x128TwoPerSm,
  // Warp-specialised wgmma, 128 x 128 tiles: a producer warpgroup copies (cp.async, three tiles
  // ahead) and unpacks into a five-stage mbarrier ring, two consumer warpgroups only issue wgmma
  // and fold (setmaxnreg). Same preconditions; not chosen by kAuto until measured faster.
  kWgmmaWarpSpecialized,
};

struct DeviceW4A8PrefillGemm {
  int64_t m = 0;                       // >= 1
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
  // Optional [m, n, k / group_size]: the exact int32 group sums. kSimple only (the tensor-core
  // kernel has no registers to spare for their addresses).
  int32_t* group_accumulators = nullptr;
  W4A8PrefillKernel kernel = W4A8PrefillKernel::kAuto;
};

// Validates (InvalidArgument naming the field, OutOfRange when int32 could overflow) and enqueues
// on `stream`.
absl::Status GemmW4A8Prefill(const DeviceW4A8PrefillGemm& args, cudaStream_t stream);

}  // namespace flatfleet::cuda
