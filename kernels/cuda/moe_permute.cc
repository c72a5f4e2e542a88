#include "kernels/cuda/moe_permute.h"

#include <limits>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/alignment.h"
#include "kernels/cuda/moe_permute_launch.h"

namespace flatfleet::cuda {
namespace {

constexpr int64_t kMaxInt32 = std::numeric_limits<int32_t>::max();

absl::Status Null(const char* op, const char* field) {
  return absl::InvalidArgumentError(absl::StrCat(op, ": ", field, " is null"));
}

absl::Status LaunchStatus(const char* op, cudaError_t error) {
  if (error == cudaSuccess) return absl::OkStatus();
  return absl::InternalError(absl::StrCat(op, " launch: ", cudaGetErrorString(error)));
}

}  // namespace

absl::Status ComputeMoePermutation(const MoePermuteArgs& args, cudaStream_t stream) {
  constexpr char kName[] = "MoE permutation";
  static_assert(kMaxPermutedExperts == internal::kPermuteMaxExperts);
  if (args.num_experts < 1 || args.num_experts > kMaxPermutedExperts) {
    return absl::InvalidArgumentError(absl::StrCat(kName, ": num_experts = ", args.num_experts,
                                                   " is outside [1, ", kMaxPermutedExperts, "]"));
  }
  if (args.top_k < 1 || args.top_k > args.num_experts) {
    return absl::InvalidArgumentError(
        absl::StrCat(kName, ": top_k = ", args.top_k, " is outside [1, num_experts]"));
  }
  if (args.rows < 0 || args.rows * args.top_k > kMaxInt32) {
    return absl::InvalidArgumentError(
        absl::StrCat(kName, ": rows = ", args.rows, " (times top_k) is negative or exceeds int32"));
  }
  if (args.expert_offsets == nullptr) return Null(kName, "expert_offsets");
  if (args.rows > 0) {
    if (args.expert_ids == nullptr) return Null(kName, "expert_ids");
    if (args.permuted_source_row == nullptr) return Null(kName, "permuted_source_row");
    if (args.inverse_permutation == nullptr) return Null(kName, "inverse_permutation");
  }
  internal::PermuteParams params;
  params.expert_ids = args.expert_ids;
  params.total = static_cast<int32_t>(args.rows * args.top_k);
  params.top_k = static_cast<int32_t>(args.top_k);
  params.num_experts = static_cast<int32_t>(args.num_experts);
  params.expert_offsets = args.expert_offsets;
  params.permuted_source_row = args.permuted_source_row;
  params.inverse_permutation = args.inverse_permutation;
  return LaunchStatus(kName, internal::LaunchMoePermute(params, stream));
}

absl::Status GatherPermutedRows(const MoeGatherArgs& args, cudaStream_t stream) {
  constexpr char kName[] = "MoE gather";
  if (args.hidden < 1 || args.source_rows < 0 || args.permuted_rows < 0 ||
      args.permuted_rows > kMaxInt32 || args.source_rows > kMaxInt32) {
    return absl::InvalidArgumentError(
        absl::StrCat(kName, ": bad shape source_rows = ", args.source_rows,
                     ", hidden = ", args.hidden, ", permuted_rows = ", args.permuted_rows));
  }
  if (args.permuted_rows == 0) return absl::OkStatus();
  if (args.x == nullptr && args.source_rows > 0) return Null(kName, "x");
  if (args.permuted_source_row == nullptr) return Null(kName, "permuted_source_row");
  if (args.xp == nullptr) return Null(kName, "xp");
  internal::GatherParams params;
  params.x = args.x;
  params.hidden = args.hidden;
  params.permuted_source_row = args.permuted_source_row;
  params.permuted_rows = static_cast<int32_t>(args.permuted_rows);
  params.xp = args.xp;
  params.vectorized = args.hidden % 8 == 0 && Aligned16(args.x) && Aligned16(args.xp);
  return LaunchStatus(kName, internal::LaunchGatherRows(params, stream));
}

}  // namespace flatfleet::cuda
