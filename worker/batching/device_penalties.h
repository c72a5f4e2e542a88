// What a device sampler needs of a request's penalties and min_tokens masking, kept up to date
// token by token: the distinct tokens engine::Sampler::Processed touches, as
// kernels::DevicePenaltyEntry (the prompt's tokens when repetition_penalty is on, the
// completion's with their counts when any penalty is on, the stop ids while min_tokens holds
// them back). Built once from the prompt; each sampled token costs one hash lookup, and a step
// uploads only the distinct tokens (12 bytes each).
#pragma once

#include <cstdint>
#include <span>
#include <unordered_map>
#include <vector>

#include "kernels/backend.h"
#include "worker/sampling/sampling_params.h"

namespace flatfleet::engine {

class DevicePenaltyTokens {
 public:
  // `completion`: the tokens sampled so far (each is Record()ed); `stop_ids` as given to
  // engine::Sampler (end-of-sequence ids unless ignore_eos, then stop_token_ids).
  DevicePenaltyTokens(const SamplingParams& params, std::span<const int32_t> prompt,
                      std::span<const int32_t> completion, std::span<const int32_t> stop_ids);

  // A sampled token (its count feeds the frequency and presence penalties).
  void Record(int32_t token);

  // This step's entries, in first-seen order; empty when engine::Sampler::ProcessesLogits() is
  // false (no penalty, and min_tokens reached or no stop ids), and when it is true but changes
  // nothing yet (frequency or presence penalties alone before the first token): an empty list
  // means the raw row is the processed one.
  std::span<const kernels::DevicePenaltyEntry> Entries();

 private:
  kernels::DevicePenaltyEntry& EntryOf(int32_t token);

  bool penalties_ = false;
  int64_t min_tokens_ = 0;
  int64_t sampled_ = 0;
  bool masked_ = false;  // the stop ids' entries carry kMasked
  std::vector<int32_t> stop_ids_;
  std::vector<kernels::DevicePenaltyEntry> entries_;
  std::unordered_map<int32_t, size_t> index_;  // token -> its entry
};

}  // namespace flatfleet::engine
