#include "kernels/cuda/logit_penalties.h"

#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/logit_penalties_launch.h"

namespace flatfleet::cuda {

absl::Status ApplyLogitPenalties(const LogitPenalties& args, cudaStream_t stream) {
  constexpr char kName[] = "logit_penalties";
  if (args.rows < 0 || args.vocab <= 0 || args.vocab > std::numeric_limits<int32_t>::max()) {
    return absl::InvalidArgumentError(
        absl::StrCat(kName, ": bad shape rows = ", args.rows, ", vocab = ", args.vocab));
  }
  if (args.rows > std::numeric_limits<int32_t>::max()) {
    return absl::InvalidArgumentError(
        absl::StrCat(kName, ": rows = ", args.rows, " exceed one launch"));
  }
  LogitPenalties resolved = args;
  if (resolved.logits_row_stride == 0) resolved.logits_row_stride = args.vocab;
  if (resolved.logits_row_stride < args.vocab) {
    return absl::InvalidArgumentError(
        absl::StrCat(kName, ": logits_row_stride = ", resolved.logits_row_stride,
                     " is shorter than vocab = ", args.vocab));
  }
  if (args.rows == 0) return absl::OkStatus();
  const std::pair<const void*, const char*> required[] = {{args.logits, "logits"},
                                                          {args.source_row, "source_row"},
                                                          {args.entry_offsets, "entry_offsets"},
                                                          {args.processed, "processed"}};
  for (const auto& [pointer, field] : required) {
    if (pointer == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(kName, ": ", field, " is null"));
    }
  }
  if (static_cast<const void*>(args.processed) == static_cast<const void*>(args.logits)) {
    return absl::InvalidArgumentError(absl::StrCat(kName, ": processed aliases logits"));
  }
  if (const cudaError_t error = internal::LaunchLogitPenalties(resolved, stream);
      error != cudaSuccess) {
    return absl::InternalError(absl::StrCat(kName, " launch: ", cudaGetErrorString(error)));
  }
  return absl::OkStatus();
}

}  // namespace flatfleet::cuda
