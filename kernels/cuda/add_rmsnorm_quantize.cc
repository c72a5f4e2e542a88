#include "kernels/cuda/add_rmsnorm_quantize.h"

#include <cmath>
#include <cstdint>
#include <limits>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/add_rmsnorm_quantize_launch.h"
#include "kernels/cuda/alignment.h"

namespace flatfleet::cuda {
namespace {

constexpr char kName[] = "add + RMSNorm + INT8 quantize";

absl::Status Invalid(const auto&... parts) {
  return absl::InvalidArgumentError(absl::StrCat(kName, ": ", parts...));
}

}  // namespace

absl::Status AddRmsNormQuantizeInt8(const DeviceAddRmsNormQuantize& args, cudaStream_t stream) {
  if (args.rows < 0 || args.rows > std::numeric_limits<int32_t>::max()) {
    return Invalid("rows = ", args.rows, " must be in 0..2^31-1");
  }
  if (args.hidden < 4 || args.hidden % 4 != 0 || args.hidden > kAddRmsNormQuantizeMaxHidden) {
    return Invalid("hidden = ", args.hidden, " must be a positive multiple of 4 up to ",
                   kAddRmsNormQuantizeMaxHidden);
  }
  const int64_t codes_stride = args.codes_stride == 0 ? args.hidden : args.codes_stride;
  if (codes_stride < args.hidden || codes_stride % 4 != 0) {
    return Invalid("codes_stride = ", codes_stride,
                   " must be a multiple of 4 and >= hidden = ", args.hidden);
  }
  if (!(args.eps >= 0.0f) || !std::isfinite(args.eps)) return Invalid("eps = ", args.eps);
  if (!(args.clip_ratio > 0.0f && args.clip_ratio <= 1.0f)) {
    return Invalid("clip_ratio = ", args.clip_ratio, " must be in (0, 1]");
  }
  for (auto [name, pointer, alignment, required] :
       {std::tuple<const char*, const void*, uintptr_t, bool>{"residual", args.residual, 16, true},
        {"weight", args.weight, 16, true},
        {"codes", args.codes, 4, true},
        {"delta", args.delta, 8, false},
        {"out", args.out, 8, false},
        {"scales", args.scales, 2, true}}) {
    if (pointer == nullptr) {
      if (required) return Invalid(name, " is null");
      continue;
    }
    if (!AlignedTo(pointer, alignment)) {
      return Invalid(name, " must be ", alignment, "-byte aligned");
    }
  }
  internal::AddRmsNormQuantizeParams params;
  params.residual = args.residual;
  params.delta = reinterpret_cast<const uint16_t*>(args.delta);
  params.weight = args.weight;
  params.codes = args.codes;
  params.scales = args.scales;
  params.out = reinterpret_cast<uint16_t*>(args.out);
  params.status = args.status;
  params.rows = args.rows;
  params.hidden = args.hidden;
  params.codes_stride = codes_stride;
  params.eps = args.eps;
  params.clip_ratio = args.clip_ratio;
  if (const cudaError_t error = internal::LaunchAddRmsNormQuantize(params, stream);
      error != cudaSuccess) {
    return absl::InternalError(absl::StrCat(kName, " launch: ", cudaGetErrorString(error)));
  }
  return absl::OkStatus();
}

}  // namespace flatfleet::cuda
