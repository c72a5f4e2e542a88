#include "kernels/cuda/w4a8_midm_gemm.h"

#include <cstdint>
#include <limits>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/w4a8_gemm_checks.h"
#include "kernels/cuda/w4a8_midm_gemm_launch.h"
#include "kernels/cuda/w4a8_prefill_gemm.h"
#include "kernels/cuda/w4a8_prefill_gemm_launch.h"
#include "kernels/cuda/w4a8_prefill_params.h"

namespace flatfleet::cuda {
namespace {

constexpr char kName[] = "W4A8 mid-M GEMM";
constexpr int64_t kMaxInt32 = std::numeric_limits<int32_t>::max();
constexpr int64_t kSmallestTile = 32;  // 64 x 32: the most blocks any variant launches

absl::Status Invalid(const auto&... parts) {
  return absl::InvalidArgumentError(absl::StrCat(kName, ": ", parts...));
}

int64_t Blocks(W4A8MidmTileShape tile, int64_t m, int64_t n) {
  return ((m + tile.rows - 1) / tile.rows) * ((n + tile.cols - 1) / tile.cols);
}

}  // namespace

W4A8MidmTileShape W4A8MidmTile(W4A8MidmKernel kernel) {
  switch (kernel) {
    case W4A8MidmKernel::kMma64x32:
      return {64, 32};
    case W4A8MidmKernel::kMma64x64:
      return {64, 64};
    case W4A8MidmKernel::kMma64x128:
      return {64, 128};
    case W4A8MidmKernel::kMma128x128:
      return {128, 128};
    default:
      return {0, 0};
  }
}

bool W4A8MidmSupports(int64_t group_size, bool zero_points) {
  return group_size * 127 * (zero_points ? 15 : 7) < (int64_t{1} << 22);
}

W4A8MidmKernel ChooseW4A8MidmKernel(int64_t m, int64_t n, int64_t group_size, bool zero_points,
                                    int sm_count, bool prefill_wgmma) {
  if (!W4A8MidmSupports(group_size, zero_points)) return W4A8MidmKernel::kPrefillMmaSync;
  // The prefill wgmma kernel's 128-row tiles at least 3/4 full, and blocks for at least 45% of
  // the SMs: measured on the H200 (session 6), it beat every mid-M tile there even at 64 blocks
  // (8192 x 8192 at m = 128: 109 against 112 us; 10240 x 8192: 109 against 134), not at 48.
  const int64_t prefill_tile_rows = 128 * ((m + 127) / 128);
  if (prefill_wgmma && 4 * m >= 3 * prefill_tile_rows &&
      Blocks({128, 128}, m, n) * 20 >= int64_t{sm_count} * 9) {
    return W4A8MidmKernel::kPrefillAuto;
  }
  for (W4A8MidmKernel kernel :
       {W4A8MidmKernel::kMma128x128, W4A8MidmKernel::kMma64x128, W4A8MidmKernel::kMma64x64}) {
    if (kernel == W4A8MidmKernel::kMma128x128 && m <= 64) continue;
    if (Blocks(W4A8MidmTile(kernel), m, n) * 10 >= int64_t{sm_count} * 9) return kernel;
  }
  return W4A8MidmKernel::kMma64x32;
}

absl::Status GemmW4A8Midm(const DeviceW4A8MidmGemm& args, cudaStream_t stream) {
  // One block per 64 x 32 tile at most, in a one-dimensional grid (checked first: such an m x n
  // also makes y too large to address).
  if (((args.m + 63) / 64) * ((args.n + kSmallestTile - 1) / kSmallestTile) > kMaxInt32) {
    return Invalid("m = ", args.m, " x n = ", args.n, " exceeds one launch");
  }
  const W4A8GemmFields fields = W4A8Fields(args);
  absl::StatusOr<W4A8CheckedShape> shape = CheckW4A8Shape(kName, fields, kMaxInt32);
  if (!shape.ok()) return shape.status();
  const bool zero_points = args.w_zero_points != nullptr;
  W4A8MidmKernel kernel = args.kernel;
  if (kernel == W4A8MidmKernel::kAuto) {
    const int sm_count = args.sm_count > 0 ? args.sm_count : CurrentDeviceSmCount();
    // The prefill GEMM's kAuto runs its wgmma kernel where these hold.
    const bool prefill_wgmma = args.k % 128 == 0 && args.group_size % 128 == 0 &&
                               shape->group_sums_below_2_22 && CurrentDeviceIsHopper();
    kernel =
        ChooseW4A8MidmKernel(args.m, args.n, args.group_size, zero_points, sm_count, prefill_wgmma);
  }
  if (kernel == W4A8MidmKernel::kPrefillAuto) {  // the prefill GEMM validates and runs it all
    DeviceW4A8PrefillGemm prefill;
    prefill.m = args.m;
    prefill.n = args.n;
    prefill.k = args.k;
    prefill.group_size = args.group_size;
    prefill.x_codes = args.x_codes;
    prefill.x_scales = args.x_scales;
    prefill.w_words = args.w_words;
    prefill.w_unsigned_nibbles = args.w_unsigned_nibbles;
    prefill.w_scales = args.w_scales;
    prefill.w_zero_points = args.w_zero_points;
    prefill.epilogue_add = args.epilogue_add;
    prefill.y = args.y;
    prefill.y_stride = args.y_stride;
    prefill.y_type = args.y_type;
    prefill.kernel = W4A8PrefillKernel::kAuto;
    return GemmW4A8Prefill(prefill, stream);
  }
  internal::W4A8MidmTileVariant tile = internal::W4A8MidmTileVariant::k64x32;
  internal::W4A8PrefillVariant prefill_variant = internal::W4A8PrefillVariant::kMmaSync128x128;
  bool midm = true;
  switch (kernel) {
    case W4A8MidmKernel::kMma64x32:
      tile = internal::W4A8MidmTileVariant::k64x32;
      break;
    case W4A8MidmKernel::kMma64x64:
      tile = internal::W4A8MidmTileVariant::k64x64;
      break;
    case W4A8MidmKernel::kMma64x128:
      tile = internal::W4A8MidmTileVariant::k64x128;
      break;
    case W4A8MidmKernel::kMma128x128:
      tile = internal::W4A8MidmTileVariant::k128x128;
      break;
    case W4A8MidmKernel::kPrefillMmaSync:
      midm = false;
      break;
    case W4A8MidmKernel::kSimple:
      midm = false;
      prefill_variant = internal::W4A8PrefillVariant::kSimple;
      break;
    default:
      return Invalid("unknown kernel");
  }
  if (midm && !shape->group_sums_below_2_22) {
    return Invalid(
        "the kMma* kernels need group_size * 127 * max |w - zero| < 2^22 (groups up to 4704, or "
        "2176 with zero points), got group_size = ",
        args.group_size, zero_points ? " with zero points" : "");
  }
  if (absl::Status pointers = CheckW4A8Pointers(kName, fields); !pointers.ok()) return pointers;
  internal::W4A8PrefillParams params = internal::MakeW4A8PrefillParams(args, *shape);
  params.variant = prefill_variant;
  const cudaError_t error = midm ? internal::LaunchW4A8Midm(params, tile, stream)
                                 : internal::LaunchW4A8Prefill(params, stream);
  if (error != cudaSuccess) {
    return absl::InternalError(absl::StrCat(kName, " launch: ", cudaGetErrorString(error)));
  }
  return absl::OkStatus();
}

}  // namespace flatfleet::cuda
