#include "kernels/cuda/sampling.h"

#include <limits>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/sampling_launch.h"

namespace flatfleet::cuda {

absl::Status SampleTokens(const DeviceSampling& args, cudaStream_t stream) {
  constexpr char kName[] = "sampling";
  // Fixed-point weights of at most 2^40 each must sum within uint64.
  constexpr int64_t kMaxVocab = int64_t{1} << 23;
  if (args.rows < 0 || args.vocab <= 0 || args.vocab > kMaxVocab) {
    return absl::InvalidArgumentError(absl::StrCat(kName, ": bad shape rows = ", args.rows,
                                                   ", vocab = ", args.vocab, " (vocab at most ",
                                                   kMaxVocab, ")"));
  }
  if (args.rows > std::numeric_limits<int32_t>::max()) {
    return absl::InvalidArgumentError(
        absl::StrCat(kName, ": rows = ", args.rows, " exceed one launch"));
  }
  const int64_t stride = args.logits_row_stride == 0 ? args.vocab : args.logits_row_stride;
  if (stride < args.vocab) {
    return absl::InvalidArgumentError(absl::StrCat(kName, ": logits_row_stride = ", stride,
                                                   " is shorter than vocab = ", args.vocab));
  }
  if (args.algorithm != SamplingAlgorithm::kRadixSelect &&
      args.algorithm != SamplingAlgorithm::kBisection) {
    return absl::InvalidArgumentError(absl::StrCat(kName, ": unknown algorithm"));
  }
  if (args.rows == 0) return absl::OkStatus();
  if (args.logits == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(kName, ": logits is null"));
  }
  if (args.tokens == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(kName, ": tokens is null"));
  }
  if ((args.processed_logits == nullptr) != (args.processed_row == nullptr)) {
    return absl::InvalidArgumentError(
        absl::StrCat(kName, ": processed_logits and processed_row go together"));
  }
  internal::SamplingParams params;
  params.logits = args.logits;
  params.rows = args.rows;
  params.vocab = args.vocab;
  params.row_stride = stride;
  params.temperature = args.temperature;
  params.top_k = args.top_k;
  params.top_p = args.top_p;
  params.seed = args.seed;
  params.step = args.step;
  params.tokens = args.tokens;
  params.logprobs = args.logprobs;
  params.processed_logits = args.processed_logits;
  params.processed_row = args.processed_row;
  params.bisection = args.algorithm == SamplingAlgorithm::kBisection;
  if (const cudaError_t error = internal::LaunchSampling(params, stream); error != cudaSuccess) {
    return absl::InternalError(absl::StrCat(kName, " launch: ", cudaGetErrorString(error)));
  }
  return absl::OkStatus();
}

}  // namespace flatfleet::cuda
