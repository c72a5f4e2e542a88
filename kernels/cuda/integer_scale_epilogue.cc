#include "kernels/cuda/integer_scale_epilogue.h"

#include "absl/strings/str_cat.h"
#include "kernels/cuda/integer_scale_epilogue_launch.h"

namespace flatfleet::cuda {

absl::Status IntegerScaleEpilogue(const DeviceIntegerScaleEpilogue& args, cudaStream_t stream) {
  if (args.rows < 0 || args.rows > 65535 || args.cols <= 0 || args.groups <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("integer scale epilogue: rows ", args.rows,
                                                   " (0..65535 per launch), cols ", args.cols,
                                                   ", groups ", args.groups));
  }
  if (args.amplifier_bits < 0 || args.amplifier_bits > 30) {
    return absl::InvalidArgumentError(absl::StrCat(
        "integer scale epilogue: amplifier_bits must be in 0..30, got ", args.amplifier_bits));
  }
  const int64_t y_stride = args.y_stride == 0 ? args.cols : args.y_stride;
  if (y_stride < args.cols) {
    return absl::InvalidArgumentError(absl::StrCat("integer scale epilogue: y_stride ",
                                                   args.y_stride, " below cols ", args.cols));
  }
  if (args.rows > 0 &&
      (args.group_sums == nullptr || args.multipliers == nullptr || args.x_scales == nullptr ||
       args.base_scales == nullptr || args.y == nullptr)) {
    return absl::InvalidArgumentError(
        "integer scale epilogue: group_sums, multipliers, x_scales, base_scales and y must be "
        "device pointers");
  }
  internal::IntegerScaleEpilogueParams params;
  params.rows = args.rows;
  params.cols = args.cols;
  params.groups = args.groups;
  params.group_sums = args.group_sums;
  params.multipliers = args.multipliers;
  params.x_scales = args.x_scales;
  params.base_scales = args.base_scales;
  params.amplifier_bits = args.amplifier_bits;
  params.add = args.add;
  params.y = args.y;
  params.y_stride = y_stride;
  params.y_is_bf16 = args.y_type == GemmElementType::kBf16;
  if (const cudaError_t error = internal::LaunchIntegerScaleEpilogue(params, stream);
      error != cudaSuccess) {
    return absl::InternalError(
        absl::StrCat("integer scale epilogue launch: ", cudaGetErrorString(error)));
  }
  return absl::OkStatus();
}

}  // namespace flatfleet::cuda
