// The OpenAI API's logprobs on the GPU: per listed row, the log-softmax under the raw logits
// (temperature 1, before penalties) of the sampled token and of the `count` most likely tokens,
// most likely first and the lower id first on equal logits: engine::TopLogprobs's order
// (worker/sampling/sampler.cc), so the ids are the CPU's exactly when the logits are (-0 and +0
// count as equal there too; rows holding NaN have no defined order on the CPU and are not
// promised one here).
//
// Values: float32 max and log-sum-exp in the sampler's fixed summation order (sampling.h), then
// x - max - log(sum): the chosen token's value is bit-identical to the one SampleTokens reports,
// and within ~1e-5 of the CPU's double computation for logits of magnitude < 100.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "absl/status/status.h"

namespace flatfleet::cuda {

inline constexpr int kMaxTopLogprobs = 20;  // engine::kMaxTopLogprobs

enum class TopLogprobsAlgorithm {
  kRadixSelect,     // default: the k-th largest logit by radix select, then one gather pass
  kRepeatedArgmax,  // reference: one block argmax pass per reported token
};

struct TopLogprobs {
  const float* logits = nullptr;  // [logit rows, vocab] with logits_row_stride, device memory
  int64_t vocab = 0;              // 1 ... 2^31 - 1
  int64_t logits_row_stride = 0;  // elements; 0: vocab
  int64_t rows = 0;               // listed rows
  // Device memory, per listed row j: its logits row, how many alternatives (0 ...
  // kMaxTopLogprobs; more than vocab reports vocab), and the sampled tokens of all logit rows
  // (tokens[source_row[j]] is row j's chosen token, as SampleTokens wrote it).
  const int32_t* source_row = nullptr;  // [rows]
  const int32_t* count = nullptr;       // [rows]
  const int32_t* tokens = nullptr;      // [logit rows]
  float* chosen_logprob = nullptr;      // [rows]
  // [rows, kMaxTopLogprobs]: entries at or past the row's count hold token -1 and -inf.
  int32_t* top_tokens = nullptr;
  float* top_logprobs = nullptr;
  TopLogprobsAlgorithm algorithm = TopLogprobsAlgorithm::kRadixSelect;
};

// Validates the arguments (InvalidArgument naming the field) and enqueues on `stream`. Device
// data (rows, counts, tokens) is not checked; counts are clamped to [0, kMaxTopLogprobs].
absl::Status ComputeTopLogprobs(const TopLogprobs& args, cudaStream_t stream);

}  // namespace flatfleet::cuda
