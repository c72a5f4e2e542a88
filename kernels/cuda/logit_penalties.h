// Penalties and min_tokens masking on the GPU, with engine::Sampler::Processed's float
// operations in its order (worker/sampling/sampler.cc), so the processed logits are bit-identical
// to the CPU's: per token t of a row's entries,
//   v = raw[t];
//   if repetition_penalty != 1 and t is in the prompt or the completion:
//     v = v > 0 ? v / repetition_penalty : v * repetition_penalty;
//   if (frequency_penalty != 0 or presence_penalty != 0) and count(t) > 0:
//     v = v - (frequency_penalty * float(count(t)) + presence_penalty);
//   if t is masked (a stop id while the completion is shorter than min_tokens): v = -inf.
// Every other logit is copied unchanged. The raw logits are only read (logprobs use them).
//
// A row's entries are the distinct tokens that touch it, built by the host each step (compressed
// rows: entry_offsets[j] ... entry_offsets[j + 1]): the prompt's and completion's distinct tokens
// when a penalty is on, and the stop ids while min_tokens holds them back. 12 bytes per entry.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "absl/status/status.h"

namespace flatfleet::cuda {

struct LogitPenaltyEntry {
  static constexpr uint32_t kInPrompt = 1;  // the token occurs in the prompt
  static constexpr uint32_t kMasked = 2;    // set to -inf (min_tokens)
  int32_t token = 0;                        // outside [0, vocab): ignored, as on the CPU
  int32_t completion_count = 0;             // occurrences in the completion so far (>= 0)
  uint32_t flags = 0;
};

struct LogitPenalties {
  const float* logits = nullptr;  // [logit rows, vocab] with logits_row_stride, device memory
  int64_t vocab = 0;
  int64_t logits_row_stride = 0;  // elements; 0: vocab
  int64_t rows = 0;               // processed rows
  // Device memory: per processed row j, the logits row it processes and its penalties.
  const int32_t* source_row = nullptr;         // [rows]
  const float* repetition_penalty = nullptr;   // [rows]; null: 1 (off) for every row
  const float* frequency_penalty = nullptr;    // [rows]; null: 0
  const float* presence_penalty = nullptr;     // [rows]; null: 0
  const int32_t* entry_offsets = nullptr;      // [rows + 1], nondecreasing, entry_offsets[0] = 0
  const LogitPenaltyEntry* entries = nullptr;  // [entry_offsets[rows]], distinct tokens per row
  float* processed = nullptr;  // [rows, vocab] dense, device memory (may not alias logits)
};

// Validates the arguments (InvalidArgument naming the field) and enqueues on `stream`. The
// offsets, tokens and source rows are device data and are not checked: the caller builds them.
absl::Status ApplyLogitPenalties(const LogitPenalties& args, cudaStream_t stream);

}  // namespace flatfleet::cuda
