#include "kernels/cuda/bias_add.h"

#include "absl/strings/str_cat.h"
#include "kernels/cuda/bias_add_launch.h"

namespace flatfleet::cuda {

absl::Status AddBias(const DeviceBiasAdd& args, cudaStream_t stream) {
  constexpr char kName[] = "bias add";
  if (args.rows < 0 || args.cols < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(kName, ": bad shape rows = ", args.rows, ", cols = ", args.cols));
  }
  for (GemmElementType type : {args.bias_type, args.y_type}) {
    if (type != GemmElementType::kBf16 && type != GemmElementType::kFloat32) {
      return absl::InvalidArgumentError(absl::StrCat(kName, ": unknown bias_type or y_type"));
    }
  }
  const int64_t x_stride = args.x_stride == 0 ? args.cols : args.x_stride;
  const int64_t y_stride = args.y_stride == 0 ? args.cols : args.y_stride;
  if (x_stride < args.cols) {
    return absl::InvalidArgumentError(
        absl::StrCat(kName, ": x_stride = ", x_stride, " is less than cols = ", args.cols));
  }
  if (y_stride < args.cols) {
    return absl::InvalidArgumentError(
        absl::StrCat(kName, ": y_stride = ", y_stride, " is less than cols = ", args.cols));
  }
  if (args.rows == 0 || args.cols == 0) return absl::OkStatus();
  if (args.x == nullptr) return absl::InvalidArgumentError(absl::StrCat(kName, ": x is null"));
  if (args.bias == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(kName, ": bias is null"));
  }
  if (args.y == nullptr) return absl::InvalidArgumentError(absl::StrCat(kName, ": y is null"));
  if (args.y == static_cast<const void*>(args.x) &&
      (args.y_type != GemmElementType::kFloat32 || y_stride != x_stride)) {
    return absl::InvalidArgumentError(
        absl::StrCat(kName, ": y == x (in place) needs y_type float32 and y_stride == x_stride"));
  }
  internal::BiasAddParams params;
  params.rows = args.rows;
  params.cols = args.cols;
  params.x = args.x;
  params.x_stride = x_stride;
  params.bias = args.bias;
  params.bias_is_bf16 = args.bias_type == GemmElementType::kBf16;
  params.y = args.y;
  params.y_stride = y_stride;
  params.y_is_bf16 = args.y_type == GemmElementType::kBf16;
  if (const cudaError_t error = internal::LaunchBiasAdd(params, stream); error != cudaSuccess) {
    return absl::InternalError(absl::StrCat(kName, " launch: ", cudaGetErrorString(error)));
  }
  return absl::OkStatus();
}

}  // namespace flatfleet::cuda
