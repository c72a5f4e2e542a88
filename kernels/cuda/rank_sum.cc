#include "kernels/cuda/rank_sum.h"

#include "absl/strings/str_cat.h"
#include "kernels/cuda/rank_sum_launch.h"

namespace flatfleet::cuda {

absl::Status SumRanks(const DeviceRankSum& args, cudaStream_t stream) {
  constexpr char kName[] = "rank sum";
  if (args.num_inputs < 1 || args.num_inputs > kMaxRankSumInputs) {
    return absl::InvalidArgumentError(absl::StrCat(kName, ": num_inputs = ", args.num_inputs,
                                                   " is outside [1, ", kMaxRankSumInputs, "]"));
  }
  if (args.count < 0) {
    return absl::InvalidArgumentError(absl::StrCat(kName, ": count = ", args.count));
  }
  if (args.type != GemmElementType::kFloat32 && args.type != GemmElementType::kBf16) {
    return absl::InvalidArgumentError(absl::StrCat(kName, ": type must be float32 or bf16"));
  }
  if (args.count == 0) return absl::OkStatus();
  if (args.output == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(kName, ": output is null"));
  }
  const int64_t bytes = args.count * (args.type == GemmElementType::kBf16 ? 2 : 4);
  const auto* out = static_cast<const char*>(args.output);
  internal::RankSumParams params;
  for (int r = 0; r < args.num_inputs; ++r) {
    const auto* in = static_cast<const char*>(args.inputs[r]);
    if (in == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(kName, ": inputs[", r, "] is null"));
    }
    if (in < out + bytes && out < in + bytes) {
      return absl::InvalidArgumentError(absl::StrCat(kName, ": output overlaps inputs[", r, "]"));
    }
    params.inputs[r] = args.inputs[r];
  }
  params.num_inputs = args.num_inputs;
  params.count = args.count;
  params.bf16 = args.type == GemmElementType::kBf16;
  params.output = args.output;
  if (const cudaError_t error = internal::LaunchRankSum(params, stream); error != cudaSuccess) {
    return absl::InternalError(absl::StrCat(kName, " launch: ", cudaGetErrorString(error)));
  }
  return absl::OkStatus();
}

}  // namespace flatfleet::cuda
