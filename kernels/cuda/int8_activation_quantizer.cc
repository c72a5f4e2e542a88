#include "kernels/cuda/int8_activation_quantizer.h"

#include "absl/strings/str_cat.h"
#include "kernels/cuda/int8_kernels_launch.h"

namespace flatfleet::cuda {

static_assert(kQuantizeNonFiniteInput == internal::kQuantizeNonFiniteInput);
static_assert(kQuantizeScaleOverflow == internal::kQuantizeScaleOverflow);

absl::Status QuantizeActivationsInt8(const DeviceActivationQuantization& args,
                                     cudaStream_t stream) {
  if (args.rows < 0 || args.cols <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("activation quantization: bad shape [", args.rows, ", ", args.cols, "]"));
  }
  if (args.rows > 0x7fffffff) {
    return absl::InvalidArgumentError(
        absl::StrCat("activation quantization: ", args.rows, " rows exceed one launch"));
  }
  if (!(args.clip_ratio > 0.0f && args.clip_ratio <= 1.0f)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "activation quantization: clip_ratio must be in (0, 1], got ", args.clip_ratio));
  }
  if (args.qmax < 1 || args.qmax > 127) {
    return absl::InvalidArgumentError(
        absl::StrCat("activation quantization: qmax must be in 1..127, got ", args.qmax));
  }
  if (args.static_scale != 0 && args.static_scale >= 0x7c00) {
    return absl::InvalidArgumentError(absl::StrCat("activation quantization: static_scale 0x",
                                                   absl::Hex(args.static_scale),
                                                   " is not a positive finite FP16 value"));
  }
  const int64_t x_cols = args.channel_sources != nullptr ? args.x_cols : args.cols;
  if (args.channel_sources != nullptr && x_cols <= 0) {
    return absl::InvalidArgumentError(
        "activation quantization: x_cols must be positive with channel_sources");
  }
  const int64_t x_stride = args.x_stride == 0 ? x_cols : args.x_stride;
  const int64_t codes_stride = args.codes_stride == 0 ? args.cols : args.codes_stride;
  if (x_stride < x_cols || codes_stride < args.cols) {
    return absl::InvalidArgumentError(absl::StrCat(
        "activation quantization: x_stride ", args.x_stride, " must be 0 or at least ", x_cols,
        " and codes_stride ", args.codes_stride, " must be 0 or at least cols = ", args.cols));
  }
  if (args.rows > 0 && (args.x == nullptr || args.codes == nullptr || args.scales == nullptr)) {
    return absl::InvalidArgumentError(
        "activation quantization: x, codes and scales must be device pointers");
  }
  internal::QuantizeRowsParams params;
  params.x = args.x;
  params.x_is_bf16 = args.type == ActivationType::kBfloat16;
  params.rows = args.rows;
  params.cols = args.cols;
  params.x_stride = x_stride;
  params.codes_stride = codes_stride;
  params.clip_ratio = args.clip_ratio;
  params.codes = args.codes;
  params.scales = args.scales;
  params.status = args.status;
  params.qmax = args.qmax;
  params.static_scale = args.static_scale;
  params.channel_sources = args.channel_sources;
  params.channel_divisors = args.channel_divisors;
  if (const cudaError_t error = internal::LaunchQuantizeRowsInt8(params, stream);
      error != cudaSuccess) {
    return absl::InternalError(
        absl::StrCat("activation quantization launch: ", cudaGetErrorString(error)));
  }
  return absl::OkStatus();
}

}  // namespace flatfleet::cuda
