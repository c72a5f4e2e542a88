#include "kernels/cuda/moe_routing.h"

#include <limits>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/moe_routing_launch.h"

namespace flatfleet::cuda {

absl::Status TopKSoftmaxRouting(const MoeRoutingArgs& args, cudaStream_t stream) {
  constexpr char kName[] = "MoE routing";
  if (args.rows < 0 || args.rows > std::numeric_limits<int32_t>::max()) {
    return absl::InvalidArgumentError(absl::StrCat(kName, ": bad rows = ", args.rows));
  }
  if (args.num_experts < 1 || args.num_experts > kMaxRoutedExperts) {
    return absl::InvalidArgumentError(absl::StrCat(kName, ": num_experts = ", args.num_experts,
                                                   " is outside [1, ", kMaxRoutedExperts, "]"));
  }
  if (args.top_k < 1 || args.top_k > kMaxRoutingTopK || args.top_k > args.num_experts) {
    return absl::InvalidArgumentError(absl::StrCat(kName, ": top_k = ", args.top_k,
                                                   " is outside [1, min(", kMaxRoutingTopK,
                                                   ", num_experts = ", args.num_experts, ")]"));
  }
  if (args.rows == 0) return absl::OkStatus();
  if (args.router_logits == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(kName, ": router_logits is null"));
  }
  if (args.expert_ids == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(kName, ": expert_ids is null"));
  }
  if (args.expert_weights == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(kName, ": expert_weights is null"));
  }
  internal::RoutingParams params;
  params.logits = args.router_logits;
  params.rows = static_cast<int32_t>(args.rows);
  params.num_experts = static_cast<int32_t>(args.num_experts);
  params.top_k = static_cast<int32_t>(args.top_k);
  params.expert_ids = args.expert_ids;
  params.expert_weights = args.expert_weights;
  if (cudaError_t error = internal::LaunchTopKSoftmaxRouting(params, stream);
      error != cudaSuccess) {
    return absl::InternalError(absl::StrCat(kName, " launch: ", cudaGetErrorString(error)));
  }
  return absl::OkStatus();
}

}  // namespace flatfleet::cuda
