#include "kernels/cuda/top_logprobs.h"

#include "absl/strings/str_cat.h"
#include "kernels/cuda/logit_rows_checks.h"
#include "kernels/cuda/top_logprobs_launch.h"

namespace flatfleet::cuda {

absl::Status ComputeTopLogprobs(const TopLogprobs& args, cudaStream_t stream) {
  constexpr char kName[] = "top_logprobs";
  absl::StatusOr<int64_t> stride =
      internal::CheckLogitRows(kName, args.rows, args.vocab, args.logits_row_stride);
  if (!stride.ok()) return stride.status();
  TopLogprobs resolved = args;
  resolved.logits_row_stride = *stride;
  if (args.algorithm != TopLogprobsAlgorithm::kRadixSelect &&
      args.algorithm != TopLogprobsAlgorithm::kRepeatedArgmax) {
    return absl::InvalidArgumentError(absl::StrCat(kName, ": unknown algorithm"));
  }
  if (args.rows == 0) return absl::OkStatus();
  if (absl::Status pointers =
          internal::CheckNonNull(kName, {{args.logits, "logits"},
                                         {args.source_row, "source_row"},
                                         {args.count, "count"},
                                         {args.tokens, "tokens"},
                                         {args.chosen_logprob, "chosen_logprob"},
                                         {args.top_tokens, "top_tokens"},
                                         {args.top_logprobs, "top_logprobs"}});
      !pointers.ok()) {
    return pointers;
  }
  if (const cudaError_t error = internal::LaunchTopLogprobs(resolved, stream);
      error != cudaSuccess) {
    return absl::InternalError(absl::StrCat(kName, " launch: ", cudaGetErrorString(error)));
  }
  return absl::OkStatus();
}

}  // namespace flatfleet::cuda
