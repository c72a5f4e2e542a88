#include "kernels/cuda/moe_unpermute.h"

#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/alignment.h"
#include "kernels/cuda/moe_unpermute_launch.h"

namespace flatfleet::cuda {
namespace {

size_t ElementBytes(GemmElementType type) { return type == GemmElementType::kBf16 ? 2 : 4; }

}  // namespace

absl::Status UnpermuteMoeOutput(const MoeUnpermuteArgs& args, cudaStream_t stream) {
  constexpr char kName[] = "MoE unpermute";
  static_assert(kMaxUnpermuteTopK == internal::kUnpermuteMaxTopK);
  if (args.top_k < 1 || args.top_k > kMaxUnpermuteTopK) {
    return absl::InvalidArgumentError(
        absl::StrCat(kName, ": top_k = ", args.top_k, " is outside [1, ", kMaxUnpermuteTopK, "]"));
  }
  if (args.rows < 0 || args.rows * args.top_k > std::numeric_limits<int32_t>::max() ||
      args.hidden < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat(kName, ": bad shape rows = ", args.rows, ", hidden = ", args.hidden));
  }
  if (args.rows == 0) return absl::OkStatus();
  for (auto [name, pointer] : {std::pair<const char*, const void*>{"yp", args.yp},
                               {"expert_ids", args.expert_ids},
                               {"expert_weights", args.expert_weights},
                               {"inverse_permutation", args.inverse_permutation},
                               {"out", args.out}}) {
    if (pointer == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(kName, ": ", name, " is null"));
    }
  }
  internal::UnpermuteParams params;
  params.yp = args.yp;
  params.yp_float32 = args.yp_type == GemmElementType::kFloat32;
  params.rows = static_cast<int32_t>(args.rows);
  params.top_k = static_cast<int32_t>(args.top_k);
  params.hidden = args.hidden;
  params.expert_ids = args.expert_ids;
  params.expert_weights = args.expert_weights;
  params.inverse_permutation = args.inverse_permutation;
  params.out = args.out;
  params.out_float32 = args.out_type == GemmElementType::kFloat32;
  // Four elements per access: 8 bytes of bf16 or 16 of float32, so both rows must be aligned so.
  params.vectorized = args.hidden % 4 == 0 && AlignedTo(args.yp, 4 * ElementBytes(args.yp_type)) &&
                      AlignedTo(args.out, 4 * ElementBytes(args.out_type));
  if (cudaError_t error = internal::LaunchMoeUnpermute(params, stream); error != cudaSuccess) {
    return absl::InternalError(absl::StrCat(kName, " launch: ", cudaGetErrorString(error)));
  }
  return absl::OkStatus();
}

}  // namespace flatfleet::cuda
