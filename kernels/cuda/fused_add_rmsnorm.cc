#include "kernels/cuda/fused_add_rmsnorm.h"

#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/fused_add_rmsnorm_launch.h"

namespace flatfleet::cuda {

absl::Status FusedAddRmsNorm(const DeviceFusedAddRmsNorm& args, cudaStream_t stream) {
  constexpr char kName[] = "fused add + RMSNorm";
  constexpr int64_t kMaxBlocks = std::numeric_limits<int32_t>::max();
  if (args.rows < 0 || args.hidden <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(kName, ": bad shape rows = ", args.rows, ", hidden = ", args.hidden));
  }
  if (args.out_rows < 0) {
    return absl::InvalidArgumentError(absl::StrCat(kName, ": out_rows = ", args.out_rows));
  }
  if (args.row_index == nullptr && args.out_rows != 0 && args.out_rows != args.rows) {
    return absl::InvalidArgumentError(
        absl::StrCat(kName, ": out_rows = ", args.out_rows,
                     " without row_index must be 0 or rows = ", args.rows));
  }
  const int64_t out_rows = args.row_index != nullptr ? args.out_rows : args.rows;
  if (args.rows > kMaxBlocks || out_rows > kMaxBlocks) {
    return absl::InvalidArgumentError(absl::StrCat(kName, ": rows exceed one launch"));
  }
  if (!(args.eps >= 0.0f) || !std::isfinite(args.eps)) {
    return absl::InvalidArgumentError(absl::StrCat(kName, ": eps = ", args.eps));
  }
  if ((args.out == nullptr) == (args.out_f32 == nullptr)) {
    return absl::InvalidArgumentError(
        absl::StrCat(kName, ": set exactly one of out (bfloat16) and out_f32"));
  }
  if (args.rows == 0 && out_rows == 0) return absl::OkStatus();
  if (args.residual == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(kName, ": residual is null"));
  }
  if (args.weight == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(kName, ": weight is null"));
  }
  if (out_rows > 0 && args.rows == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(kName, ": row_index selects from an empty residual"));
  }
  internal::AddRmsNormParams params;
  params.residual = args.residual;
  params.rows = args.rows;
  params.hidden = args.hidden;
  params.delta = reinterpret_cast<const uint16_t*>(args.delta);
  params.weight = args.weight;
  params.eps = args.eps;
  params.row_index = args.row_index;
  params.out_rows = out_rows;
  params.out_is_bf16 = args.out != nullptr;
  params.out =
      args.out != nullptr ? static_cast<void*>(args.out) : static_cast<void*>(args.out_f32);
  if (const cudaError_t error = internal::LaunchAddRmsNorm(params, stream); error != cudaSuccess) {
    return absl::InternalError(absl::StrCat(kName, " launch: ", cudaGetErrorString(error)));
  }
  return absl::OkStatus();
}

}  // namespace flatfleet::cuda
