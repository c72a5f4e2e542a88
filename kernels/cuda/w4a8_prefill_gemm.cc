#include "kernels/cuda/w4a8_prefill_gemm.h"

#include <cstdint>
#include <limits>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/alignment.h"
#include "kernels/cuda/w4a8_prefill_gemm_launch.h"

namespace flatfleet::cuda {
namespace {

constexpr char kName[] = "W4A8 prefill GEMM";
constexpr int64_t kMaxInt32 = std::numeric_limits<int32_t>::max();
constexpr int64_t kTile = 128;  // the tensor-core kernel's tile (one block per 128 x 128 outputs)

absl::Status Invalid(const auto&... parts) {
  return absl::InvalidArgumentError(absl::StrCat(kName, ": ", parts...));
}

// The current device is a Hopper (compute capability 9.0), on which the sm_90a build's wgmma
// kernel runs. Attribute queries neither synchronise nor break a stream capture.
bool OnHopper() {
  int device = 0, major = 0, minor = 0;
  if (cudaGetDevice(&device) != cudaSuccess) return false;
  if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) != cudaSuccess ||
      cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device) != cudaSuccess) {
    return false;
  }
  return major == 9 && minor == 0;
}

}  // namespace

absl::Status GemmW4A8Prefill(const DeviceW4A8PrefillGemm& args, cudaStream_t stream) {
  if (args.m < 1 || args.m > kMaxInt32) return Invalid("m must be in 1..2^31-1, got ", args.m);
  if (args.n < 1 || args.n > kMaxInt32) return Invalid("n must be in 1..2^31-1, got ", args.n);
  if (args.k < 32 || args.k % 32 != 0 || args.k > kMaxInt32) {
    return Invalid("k must be a positive multiple of 32, got ", args.k);
  }
  if (args.group_size < 32 || args.group_size % 32 != 0 || args.k % args.group_size != 0) {
    return Invalid("group_size must be a multiple of 32 dividing k = ", args.k, ", got ",
                   args.group_size);
  }
  // The reference's bound: |x code| <= 127, |w code - zero| <= 15 (7 when symmetric), so every
  // int32 partial sum stays representable.
  const int64_t max_abs_weight = args.w_zero_points != nullptr ? 15 : 7;
  if (args.k * 127 * max_abs_weight > kMaxInt32) {
    return absl::OutOfRangeError(absl::StrCat(kName, ": k = ", args.k,
                                              " could overflow int32 accumulation (worst case ",
                                              args.k * 127 * max_abs_weight, ")"));
  }
  // One block per 128 x 128 tile in a one-dimensional grid.
  if (((args.m + kTile - 1) / kTile) * ((args.n + kTile - 1) / kTile) > kMaxInt32) {
    return Invalid("m = ", args.m, " x n = ", args.n, " exceeds one launch");
  }
  const int64_t y_stride = args.y_stride == 0 ? args.n : args.y_stride;
  if (y_stride < args.n) {
    return Invalid("y_stride = ", y_stride, " is less than n = ", args.n);
  }
  if (args.y_type != GemmElementType::kFloat32 && args.y_type != GemmElementType::kBf16) {
    return Invalid("unknown y_type");
  }
  const bool y_is_bf16 = args.y_type == GemmElementType::kBf16;
  const int64_t y_size = y_is_bf16 ? 2 : 4;
  if ((args.m - 1) * y_stride + args.n > std::numeric_limits<int64_t>::max() / 4) {
    return Invalid("y_stride = ", y_stride, " is too large");
  }
  const bool group_sums_below_2_22 = args.group_size * 127 * max_abs_weight < (int64_t{1} << 22);
  const bool wgmma_shape = args.k % 128 == 0 && args.group_size % 128 == 0 && group_sums_below_2_22;
  internal::W4A8PrefillVariant variant;
  switch (args.kernel) {
    case W4A8PrefillKernel::kAuto:
      variant = wgmma_shape && args.group_accumulators == nullptr && OnHopper()
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
  for (auto [name, pointer, aligned] :
       {std::tuple<const char*, const void*, bool>{"x_codes", args.x_codes, true},
        {"x_scales", args.x_scales, false},
        {"w_words", args.w_words, true},
        {"w_scales", args.w_scales, false},
        {"y", args.y, false}}) {
    if (pointer == nullptr) return Invalid(name, " is null");
    if (aligned && !Aligned16(pointer)) return Invalid(name, " must be 16-byte aligned");
  }
  if (reinterpret_cast<uintptr_t>(args.y) % y_size != 0) {
    return Invalid("y is not aligned to its element type");
  }
  internal::W4A8PrefillParams params;
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
  // Columns 2j, 2j + 1 of a row form one aligned word when the row starts on a pair boundary.
  params.y_pairs_aligned =
      y_stride % 2 == 0 && reinterpret_cast<uintptr_t>(args.y) % (2 * y_size) == 0;
  params.group_sums_below_2_22 = group_sums_below_2_22;
  params.group_accumulators = args.group_accumulators;
  params.m = static_cast<int32_t>(args.m);
  params.n = static_cast<int32_t>(args.n);
  params.k = static_cast<int32_t>(args.k);
  params.group_size = static_cast<int32_t>(args.group_size);
  params.variant = variant;
  const cudaError_t error = is_wgmma ? internal::LaunchW4A8PrefillWgmma(params, stream)
                                     : internal::LaunchW4A8Prefill(params, stream);
  if (error != cudaSuccess) {
    return absl::InternalError(absl::StrCat(kName, " launch: ", cudaGetErrorString(error)));
  }
  return absl::OkStatus();
}

}  // namespace flatfleet::cuda
