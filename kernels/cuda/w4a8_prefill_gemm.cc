#include "kernels/cuda/w4a8_prefill_gemm.h"

#include <cstdint>
#include <limits>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/w4a8_gemm_checks.h"
#include "kernels/cuda/w4a8_prefill_gemm_launch.h"
#include "kernels/cuda/w4a8_prefill_params.h"

namespace flatfleet::cuda {
namespace {

constexpr char kName[] = "W4A8 prefill GEMM";
constexpr int64_t kMaxInt32 = std::numeric_limits<int32_t>::max();
constexpr int64_t kTile = 128;  // the tensor-core kernel's tile (one block per 128 x 128 outputs)

absl::Status Invalid(const auto&... parts) {
  return absl::InvalidArgumentError(absl::StrCat(kName, ": ", parts...));
}

}  // namespace

absl::Status GemmW4A8Prefill(const DeviceW4A8PrefillGemm& args, cudaStream_t stream) {
  // One block per 128 x 128 tile in a one-dimensional grid (checked first: such an m x n also
  // makes y too large to address).
  if (((args.m + kTile - 1) / kTile) * ((args.n + kTile - 1) / kTile) > kMaxInt32) {
    return Invalid("m = ", args.m, " x n = ", args.n, " exceeds one launch");
  }
  const W4A8GemmFields fields = W4A8Fields(args);
  absl::StatusOr<W4A8CheckedShape> shape = CheckW4A8Shape(kName, fields, kMaxInt32);
  if (!shape.ok()) return shape.status();
  const bool group_sums_below_2_22 = shape->group_sums_below_2_22;
  const bool wgmma_shape = args.k % 128 == 0 && args.group_size % 128 == 0 && group_sums_below_2_22;
  internal::W4A8PrefillVariant variant;
  switch (args.kernel) {
    case W4A8PrefillKernel::kAuto:
      variant = wgmma_shape && args.group_accumulators == nullptr && CurrentDeviceIsHopper()
                    ? internal::W4A8PrefillVariant::kWgmmaExperimental
                    : internal::W4A8PrefillVariant::kMmaSync128x128;
      break;
    case W4A8PrefillKernel::kMmaSync128x128:
      variant = internal::W4A8PrefillVariant::kMmaSync128x128;
      break;
    case W4A8PrefillKernel::kSimple:
      variant = internal::W4A8PrefillVariant::kSimple;
      break;
    case W4A8PrefillKernel::kWgmmaExperimental:
      variant = internal::W4A8PrefillVariant::kWgmmaExperimental;
      break;
    case W4A8PrefillKernel::kWgmma64x128TwoPerSm:
      variant = internal::W4A8PrefillVariant::kWgmma64x128TwoPerSm;
      break;
    case W4A8PrefillKernel::kWgmmaWarpSpecialized:
      variant = internal::W4A8PrefillVariant::kWgmmaWarpSpecialized;
      break;
    default:
      return Invalid("unknown kernel");
  }
  const bool is_wgmma = variant == internal::W4A8PrefillVariant::kWgmmaExperimental ||
                        variant == internal::W4A8PrefillVariant::kWgmma64x128TwoPerSm ||
                        variant == internal::W4A8PrefillVariant::kWgmmaWarpSpecialized;
  if (is_wgmma && !wgmma_shape) {
    return Invalid(
        "the wgmma kernel needs k and group_size multiples of 128 and group_size * 127 "
        "* max |w - zero| < 2^22, got k = ",
        args.k, ", group_size = ", args.group_size);
  }
  if (args.group_accumulators != nullptr && variant != internal::W4A8PrefillVariant::kSimple) {
    return Invalid("group_accumulators are written by the simple kernel only");
  }
  if (absl::Status pointers = CheckW4A8Pointers(kName, fields); !pointers.ok()) return pointers;
  internal::W4A8PrefillParams params = internal::MakeW4A8PrefillParams(args, *shape);
  params.group_accumulators = args.group_accumulators;
  params.variant = variant;
  const cudaError_t error = is_wgmma ? internal::LaunchW4A8PrefillWgmma(params, stream)
                                     : internal::LaunchW4A8Prefill(params, stream);
  if (error != cudaSuccess) {
    return absl::InternalError(absl::StrCat(kName, " launch: ", cudaGetErrorString(error)));
  }
  return absl::OkStatus();
}

}  // namespace flatfleet::cuda
