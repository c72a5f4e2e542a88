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

absl::Status RandomFillCodes(const DeviceRandomCodes& args, cudaStream_t stream) {
  if (args.bits != 8 && args.bits != 4) {
    return absl::InvalidArgumentError(
        absl::StrCat("RandomFillCodes: bits must be 8 or 4, got ", args.bits));
  }
  if (args.count < 0) return absl::InvalidArgumentError("RandomFillCodes: count is negative");
  if (args.count > 0 && args.out == nullptr) {
    return absl::InvalidArgumentError("RandomFillCodes: out is null");
  }
  const cudaError_t error =
      internal::LaunchRandomFillCodes(args.out, args.count, args.seed, args.bits, stream);
  if (error != cudaSuccess) {
    return absl::InternalError(absl::StrCat("RandomFillCodes: ", cudaGetErrorString(error)));
  }
  return absl::OkStatus();
}

absl::Status RandomFillScales(const DeviceRandomScales& args, cudaStream_t stream) {
  if (args.count < 0) return absl::InvalidArgumentError("RandomFillScales: count is negative");
  if (args.count > 0 && args.out == nullptr) {
    return absl::InvalidArgumentError("RandomFillScales: out is null");
  }
  if (!(args.center > 0.0f) || !std::isfinite(args.center) || !(args.spread >= 0.0f) ||
      !(args.spread < 1.0f)) {
    return absl::InvalidArgumentError(absl::StrCat("RandomFillScales: center ", args.center,
                                                   " must be positive and finite, spread ",
                                                   args.spread, " in [0, 1)"));
  }
  const cudaError_t error = internal::LaunchRandomFillScales(args.out, args.count, args.seed,
                                                             args.center, args.spread, stream);
  if (error != cudaSuccess) {
    return absl::InternalError(absl::StrCat("RandomFillScales: ", cudaGetErrorString(error)));
  }
  return absl::OkStatus();
}

}  // namespace flatfleet::cuda
