#include "kernels/cuda/top_logprobs.h"

#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/top_logprobs_launch.h"

namespace flatfleet::cuda {

absl::Status ComputeTopLogprobs(const TopLogprobs& args, cudaStream_t stream) {
  constexpr char kName[] = "top_logprobs";
  if (args.rows < 0 || args.vocab <= 0 || args.vocab > std::numeric_limits<int32_t>::max()) {
    return absl::InvalidArgumentError(
        absl::StrCat(kName, ": bad shape rows = ", args.rows, ", vocab = ", args.vocab));
  }
  if (args.rows > std::numeric_limits<int32_t>::max()) {
    return absl::InvalidArgumentError(
        absl::StrCat(kName, ": rows = ", args.rows, " exceed one launch"));
  }
  TopLogprobs resolved = args;
  if (resolved.logits_row_stride == 0) resolved.logits_row_stride = args.vocab;
  if (resolved.logits_row_stride < args.vocab) {
    return absl::InvalidArgumentError(
        absl::StrCat(kName, ": logits_row_stride = ", resolved.logits_row_stride,
                     " is shorter than vocab = ", args.vocab));
  }
  if (args.algorithm != TopLogprobsAlgorithm::kRadixSelect &&
      args.algorithm != TopLogprobsAlgorithm::kRepeatedArgmax) {
    return absl::InvalidArgumentError(absl::StrCat(kName, ": unknown algorithm"));
  }
  if (args.rows == 0) return absl::OkStatus();
  const std::pair<const void*, const char*> required[] = {{args.logits, "logits"},
                                                          {args.source_row, "source_row"},
                                                          {args.count, "count"},
                                                          {args.tokens, "tokens"},
                                                          {args.chosen_logprob, "chosen_logprob"},
                                                          {args.top_tokens, "top_tokens"},
                                                          {args.top_logprobs, "top_logprobs"}};
  for (const auto& [pointer, field] : required) {
    if (pointer == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(kName, ": ", field, " is null"));
    }
  }
  if (const cudaError_t error = internal::LaunchTopLogprobs(resolved, stream);
      error != cudaSuccess) {
    return absl::InternalError(absl::StrCat(kName, " launch: ", cudaGetErrorString(error)));
  }
  return absl::OkStatus();
}

}  // namespace flatfleet::cuda
