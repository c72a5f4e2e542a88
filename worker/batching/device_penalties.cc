#include "worker/batching/device_penalties.h"

namespace flatfleet::engine {

DevicePenaltyTokens::DevicePenaltyTokens(const SamplingParams& params,
                                         std::span<const int32_t> prompt,
                                         std::span<const int32_t> completion,
                                         std::span<const int32_t> stop_ids)
    : penalties_(params.repetition_penalty != 1.0f || params.frequency_penalty != 0.0f ||
                 params.presence_penalty != 0.0f),
      min_tokens_(params.min_tokens),
      stop_ids_(stop_ids.begin(), stop_ids.end()) {
  // Without a repetition penalty the prompt's tokens change nothing (Sampler skips them too).
  if (params.repetition_penalty != 1.0f) {
    for (int32_t token : prompt) EntryOf(token).flags |= kernels::DevicePenaltyEntry::kInPrompt;
  }
  if (min_tokens_ > 0 && !stop_ids_.empty()) {
    masked_ = true;
    for (int32_t token : stop_ids_) EntryOf(token).flags |= kernels::DevicePenaltyEntry::kMasked;
  }
  for (int32_t token : completion) Record(token);
}

kernels::DevicePenaltyEntry& DevicePenaltyTokens::EntryOf(int32_t token) {
  const auto [it, inserted] = index_.try_emplace(token, entries_.size());
  if (inserted) entries_.push_back({.token = token});
  return entries_[it->second];
}

void DevicePenaltyTokens::Record(int32_t token) {
  ++sampled_;
  if (penalties_) ++EntryOf(token).completion_count;
}

std::span<const kernels::DevicePenaltyEntry> DevicePenaltyTokens::Entries() {
  if (masked_ && sampled_ >= min_tokens_) {
    for (int32_t token : stop_ids_) {
      entries_[index_.at(token)].flags &= ~kernels::DevicePenaltyEntry::kMasked;
    }
    masked_ = false;
  }
  if (!penalties_ && !masked_) return {};
  return entries_;
}

}  // namespace flatfleet::engine
