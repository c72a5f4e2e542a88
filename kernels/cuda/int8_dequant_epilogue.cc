#include "kernels/cuda/int8_dequant_epilogue.h"

#include "absl/strings/str_cat.h"
#include "kernels/cuda/int8_dequant_epilogue_launch.h"

namespace flatfleet::cuda {

absl::Status Int8DequantEpilogue(const DeviceInt8DequantEpilogue& args, cudaStream_t stream) {
  constexpr const char* kName = "Int8DequantEpilogue";
  if (args.rows < 0 || args.cols < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(kName, ": bad shape [", args.rows, ", ", args.cols, "]"));
  }
  const int64_t y_stride = args.y_stride == 0 ? args.cols : args.y_stride;
  if (y_stride < args.cols) {
    return absl::InvalidArgumentError(
        absl::StrCat(kName, ": y_stride ", args.y_stride, " is below cols ", args.cols));
  }
  if (args.rows > 0 && args.cols > 0 &&
      (args.sums == nullptr || args.x_scales == nullptr || args.w_scales == nullptr ||
       args.y == nullptr)) {
    return absl::InvalidArgumentError(
        absl::StrCat(kName, ": sums, x_scales, w_scales and y must be device pointers"));
  }
  if (args.y_type != GemmElementType::kBf16 && args.y_type != GemmElementType::kFloat32) {
    return absl::InvalidArgumentError(absl::StrCat(kName, ": unknown y_type"));
  }
  internal::Int8DequantEpilogueParams params;
  params.rows = args.rows;
  params.cols = args.cols;
  params.sums = args.sums;
  params.x_scales = args.x_scales;
  params.w_scales = args.w_scales;
  params.add = args.add;
  params.y = args.y;
  params.y_stride = y_stride;
  params.y_is_bf16 = args.y_type == GemmElementType::kBf16;
  if (const cudaError_t error = internal::LaunchInt8DequantEpilogue(params, stream);
      error != cudaSuccess) {
    return absl::InternalError(absl::StrCat(kName, " launch: ", cudaGetErrorString(error)));
  }
  return absl::OkStatus();
}

}  // namespace flatfleet::cuda
