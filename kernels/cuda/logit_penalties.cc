#include "kernels/cuda/logit_penalties.h"

#include "absl/strings/str_cat.h"
#include "kernels/cuda/logit_penalties_launch.h"
#include "kernels/cuda/logit_rows_checks.h"

namespace flatfleet::cuda {

absl::Status ApplyLogitPenalties(const LogitPenalties& args, cudaStream_t stream) {
  constexpr char kName[] = "logit_penalties";
  absl::StatusOr<int64_t> stride =
      internal::CheckLogitRows(kName, args.rows, args.vocab, args.logits_row_stride);
  if (!stride.ok()) return stride.status();
  LogitPenalties resolved = args;
  resolved.logits_row_stride = *stride;
  if (args.rows == 0) return absl::OkStatus();
  if (absl::Status pointers = internal::CheckNonNull(kName, {{args.logits, "logits"},
                                                             {args.source_row, "source_row"},
                                                             {args.entry_offsets, "entry_offsets"},
                                                             {args.processed, "processed"}});
      !pointers.ok()) {
    return pointers;
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
