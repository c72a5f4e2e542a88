#include "kernels/cuda/w4a8_decode_gemm.h"

#include <cstdint>
#include <limits>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/w4a8_decode_gemm_launch.h"
#include "kernels/cuda/w4a8_gemm_checks.h"

namespace flatfleet::cuda {
namespace {

constexpr char kName[] = "W4A8 decode GEMM";
constexpr int64_t kMaxRows = 16;
// From this many output channels on, one warp takes 16 of them: 1024+ warps still fill an H200
// (132 SMs) several times, and each activation read from L1 serves twice the weights. Below it,
// 8 channels per warp give twice the warps (more loads in flight). A guess until measured
// (bench/cuda/w4a8_decode_gemm_bench.cc runs both on every shape).

absl::Status Invalid(const auto&... parts) {
  return absl::InvalidArgumentError(absl::StrCat(kName, ": ", parts...));
}

}  // namespace

// Measured on an H200 (bench/RESULTS.md, BM_W4A8DecodeGemm kernel:1 vs kernel:2): the narrow
// kernel is as fast or faster on every real shape at m = 1, 4, 16, up to 20% at n = 57344.
W4A8DecodeKernel ChooseW4A8DecodeKernel(int64_t n) { return W4A8DecodeKernel::kTensorCoreNarrow; }

// Why this rule (to be checked against BM_W4A8DecodeSplitK, which runs every split on every
// shape): the narrow kernel is latency-bound on narrow layers (n = 4096: 512 warps, about 4 per
// SM, each walking all of K in one dependent chain). Splitting K multiplies the warps; the most
// that fit at once keep the most independent 16-byte loads in flight, while a second, partial
// wave would leave SMs idle at the end. Fewer than 2 windows per warp only adds exchange work.
int ChooseW4A8DecodeSplit(int64_t m, int64_t n, int64_t k, int64_t group_size, int sm_count) {
  (void)m;
  if (group_size <= 0 || group_size % 128 != 0 || k % 128 != 0 || n < 1 || sm_count < 1) return 1;
  const int64_t windows = k / 128;
  const int64_t channel_blocks = (n + 7) / 8;
  int chosen = 1;
  for (int split : {2, 4, 8}) {
    const bool enough_windows = windows >= kW4A8SplitMinWindowsPerWarp * split;
    const bool one_wave =
        channel_blocks * split <= int64_t{W4A8SplitResidentWarpsPerSm(split)} * sm_count;
    if (enough_windows && one_wave) chosen = split;
  }
  return chosen;
}

bool W4A8StreamingSupports(int64_t k, int64_t group_size) {
  return group_size > 0 && group_size % 128 == 0 && k % group_size == 0 &&
         k / group_size <= internal::kW4A8StreamingMaxGroups;
}

// The streaming kernel keeps more weight bytes in flight per SM than the narrow and split-K
// kernels, but measured on one H200 (bench/RESULTS.md, session 5: BM_W4A8DecodeStreaming beside
// the previous choice on every Llama-3-8B/70B shape) it wins only on layers narrower than 14336
// outputs with k > 2048, and at more than 8 rows only where k >= 2n (its 16-row variant runs 2
// CTAs per SM instead of 3). Elsewhere (e.g. 57344 x 8192: 170.8 against 120.6 us at m = 1) the
// split-K / narrow rule stays.
namespace {
bool W4A8StreamingWins(int64_t m, int64_t n, int64_t k) {
  return n < 14336 && k > 2048 && (m <= 8 || k >= 2 * n);
}
}  // namespace

bool W4A8PipelinedSupports(int64_t k, int64_t group_size) {
  return group_size > 0 && group_size % 128 == 0 && k % group_size == 0;
}

// 32 channels per CTA halve the activation reads per weight byte (every CTA reads all m x k
// activation bytes) but halve the CTAs: only where two or more per SM remain, and above 8 rows
// (measured on the H200, session 6: at m = 16 32 channels won or tied on every shape kAuto sends
// here, e.g. 10240 x 8192: 37.0 against 55.1 us).
int ChooseW4A8PipelinedChannels(int64_t m, int64_t n, int sm_count) {
  if (m > 8) return 32;
  return sm_count > 0 && n >= int64_t{64} * sm_count ? 32 : 16;
}

// Where the pipelined kernel measured faster than the previous choice (bench/RESULTS.md, session
// 6, BM_W4A8DecodePipelined kernel:1/2 against kernel:3, L2 flushed): on layers of at least
// 8192 outputs and 8192 x 8192 weights, above 8 rows (e.g. 57344 x 8192 at m = 16: 155 against
// 171 us; 8192 x 28672: 96 against 108), and at 5..8 rows where k <= 8192 as well (10240 x 8192
// at m = 8: 34.6 against 40.0 us). At up to 4 rows, and on the narrower layers, the previous
// split-K / streaming kernels stayed faster (4096 x 14336 at m = 1: 27.5 against 36.9 us).
bool W4A8PipelinedWins(int64_t m, int64_t n, int64_t k) {
  const bool big = n >= 8192 && n * k >= int64_t{8192} * 8192;
  if (m > 8) return big;
  return m > 4 && big && k <= 8192;
}

W4A8DecodeKernel ChooseW4A8DecodeAutoKernel(int64_t m, int64_t n, int64_t k, int64_t group_size,
                                            int sm_count) {
  if (W4A8PipelinedSupports(k, group_size) && W4A8PipelinedWins(m, n, k)) {
    return W4A8DecodeKernel::kPipelined;
  }
  return W4A8DecodePreviousAutoKernel(m, n, k, group_size, sm_count);
}

W4A8DecodeKernel W4A8DecodePreviousAutoKernel(int64_t m, int64_t n, int64_t k, int64_t group_size,
                                              int sm_count) {
  if (W4A8StreamingSupports(k, group_size) && W4A8StreamingWins(m, n, k)) {
    return W4A8DecodeKernel::kStreaming;
  }
  return ChooseW4A8DecodeSplit(m, n, k, group_size, sm_count) >= 2 ? W4A8DecodeKernel::kSplitK
                                                                   : ChooseW4A8DecodeKernel(n);
}

absl::Status GemmW4A8Decode(const DeviceW4A8DecodeGemm& args, cudaStream_t stream) {
  const W4A8GemmFields fields = W4A8Fields(args);
  absl::StatusOr<W4A8CheckedShape> shape = CheckW4A8Shape(kName, fields, kMaxRows);
  if (!shape.ok()) return shape.status();
  if (args.kernel == W4A8DecodeKernel::kSplitK) {
    if (args.group_size % 128 != 0) {
      return Invalid("kSplitK needs group_size a multiple of 128, got ", args.group_size);
    }
    if (args.split != 0 && args.split != 2 && args.split != 4 && args.split != 8) {
      return Invalid("split must be 0, 2, 4 or 8, got ", args.split);
    }
  }
  if (args.kernel == W4A8DecodeKernel::kStreaming &&
      !W4A8StreamingSupports(args.k, args.group_size)) {
    return Invalid("kStreaming needs group_size a multiple of 128 and at most ",
                   internal::kW4A8StreamingMaxGroups, " groups, got group_size ", args.group_size,
                   " for k = ", args.k);
  }
  if (args.kernel == W4A8DecodeKernel::kPipelined) {
    if (!W4A8PipelinedSupports(args.k, args.group_size)) {
      return Invalid("kPipelined needs group_size a multiple of 128, got ", args.group_size);
    }
    if (args.pipelined_channels != 0 && args.pipelined_channels != 16 &&
        args.pipelined_channels != 32) {
      return Invalid("pipelined_channels must be 0, 16 or 32, got ", args.pipelined_channels);
    }
  }
  if (absl::Status pointers = CheckW4A8Pointers(kName, fields); !pointers.ok()) return pointers;
  const int64_t y_stride = shape->y_stride;
  const bool y_is_bf16 = shape->y_is_bf16;
  internal::W4A8DecodeVariant variant;
  W4A8DecodeKernel kernel = args.kernel;
  int split = args.split;
  if (kernel == W4A8DecodeKernel::kAuto && W4A8PipelinedSupports(args.k, args.group_size) &&
      W4A8PipelinedWins(args.m, args.n, args.k)) {
    kernel = W4A8DecodeKernel::kPipelined;  // ChooseW4A8DecodeAutoKernel's first rule
  }
  int pipelined_channels = args.pipelined_channels;
  if (kernel == W4A8DecodeKernel::kPipelined && pipelined_channels == 0) {
    const int sm_count = args.sm_count > 0 ? args.sm_count : CurrentDeviceSmCount();
    pipelined_channels = ChooseW4A8PipelinedChannels(args.m, args.n, sm_count);
  }
  if (kernel == W4A8DecodeKernel::kAuto && W4A8StreamingSupports(args.k, args.group_size) &&
      W4A8StreamingWins(args.m, args.n, args.k)) {
    kernel = W4A8DecodeKernel::kStreaming;  // ChooseW4A8DecodeAutoKernel's first rule
  }
  if (kernel == W4A8DecodeKernel::kAuto || (kernel == W4A8DecodeKernel::kSplitK && split == 0)) {
    const int sm_count = args.sm_count > 0 ? args.sm_count : CurrentDeviceSmCount();
    const int chosen = ChooseW4A8DecodeSplit(args.m, args.n, args.k, args.group_size, sm_count);
    if (kernel == W4A8DecodeKernel::kAuto) {
      kernel = chosen >= 2 ? W4A8DecodeKernel::kSplitK : ChooseW4A8DecodeKernel(args.n);
    }
    split = chosen >= 2 ? chosen : 2;
  }
  switch (kernel) {
    case W4A8DecodeKernel::kTensorCoreNarrow:
      variant = internal::W4A8DecodeVariant::kNarrow;
      break;
    case W4A8DecodeKernel::kTensorCoreWide:
      variant = internal::W4A8DecodeVariant::kWide;
      break;
    case W4A8DecodeKernel::kSimple:
      variant = internal::W4A8DecodeVariant::kSimple;
      break;
    case W4A8DecodeKernel::kSplitK:
      variant = internal::W4A8DecodeVariant::kSplitK;
      break;
    case W4A8DecodeKernel::kStreaming:
      variant = internal::W4A8DecodeVariant::kStreaming;
      break;
    case W4A8DecodeKernel::kPipelined:
      variant = internal::W4A8DecodeVariant::kPipelined;
      break;
    default:
      return Invalid("unknown kernel");
  }
  internal::W4A8DecodeParams params;
  params.x_codes = args.x_codes;
  params.x_scales = args.x_scales;
  params.w_words = args.w_words;
  params.w_unsigned_nibbles = args.w_unsigned_nibbles;
  params.w_scales = args.w_scales;
  params.w_zero_points = args.w_zero_points;
  params.epilogue_add = args.epilogue_add;
  params.y = args.y;
  params.y_stride = y_stride;
  params.y_is_bf16 = y_is_bf16;
  params.m = static_cast<int32_t>(args.m);
  params.n = static_cast<int32_t>(args.n);
  params.k = static_cast<int32_t>(args.k);
  params.group_size = static_cast<int32_t>(args.group_size);
  params.variant = variant;
  params.split = variant == internal::W4A8DecodeVariant::kSplitK ? split : 1;
  params.pipelined_channels = pipelined_channels == 32 ? 32 : 16;
  if (const cudaError_t error = internal::LaunchW4A8Decode(params, stream); error != cudaSuccess) {
    return absl::InternalError(absl::StrCat(kName, " launch: ", cudaGetErrorString(error)));
  }
  return absl::OkStatus();
}

}  // namespace flatfleet::cuda
