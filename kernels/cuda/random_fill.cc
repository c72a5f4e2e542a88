#include "kernels/cuda/random_fill.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/random_fill_launch.h"

namespace flatfleet::cuda {

absl::Status RandomFillBf16(const DeviceRandomFill& args, cudaStream_t stream) {
  if (args.count < 0) return absl::InvalidArgumentError("RandomFillBf16: count is negative");
  if (args.count > 0 && args.out == nullptr) {
    return absl::InvalidArgumentError("RandomFillBf16: out is null");
  }
  if (!(args.stddev >= 0.0f) || !std::isfinite(args.stddev)) {
    return absl::InvalidArgumentError(absl::StrCat("RandomFillBf16: stddev ", args.stddev));
  }
  const cudaError_t error = internal::LaunchRandomFillBf16(args.out, args.count, args.seed,
                                                           args.stddev * std::sqrt(3.0f), stream);
  if (error != cudaSuccess) {
    return absl::InternalError(absl::StrCat("RandomFillBf16: ", cudaGetErrorString(error)));
  }
  return absl::OkStatus();
}

}  // namespace flatfleet::cuda
