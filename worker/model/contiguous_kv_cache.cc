#include "worker/model/contiguous_kv_cache.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_format.h"

namespace flatfleet::engine {

ContiguousKvCache::ContiguousKvCache(int64_t num_layers, int64_t row_size, int64_t max_positions)
    : num_layers_(num_layers), row_size_(row_size), max_positions_(max_positions) {}

absl::StatusOr<SequenceId> ContiguousKvCache::AddSequence() {
  SequenceId id = next_id_++;
  Sequence& sequence = sequences_[id];
  sequence.keys.resize(num_layers_);
  sequence.values.resize(num_layers_);
  return id;
}

void ContiguousKvCache::RemoveSequence(SequenceId sequence) { sequences_.erase(sequence); }

bool ContiguousKvCache::Contains(SequenceId sequence) const {
  return sequences_.contains(sequence);
}

int64_t ContiguousKvCache::Length(SequenceId sequence) const {
  return sequences_.at(sequence).length;
}

absl::Status ContiguousKvCache::Append(SequenceId sequence, int64_t count) {
  auto it = sequences_.find(sequence);
  if (it == sequences_.end()) {
    return absl::NotFoundError(absl::StrFormat("KV cache: unknown sequence %d", sequence));
  }
  Sequence& seq = it->second;
  const int64_t new_length = seq.length + count;
  if (new_length > max_positions_) {
    return absl::ResourceExhaustedError(
        absl::StrFormat("KV cache: sequence %d would hold %d positions, more than the limit of %d",
                        sequence, new_length, max_positions_));
  }
  // Grow geometrically so that decoding one token at a time stays amortised O(1).
  const size_t needed = static_cast<size_t>(new_length * row_size_);
  for (int64_t layer = 0; layer < num_layers_; ++layer) {
    for (auto* storage : {&seq.keys[layer], &seq.values[layer]}) {
      if (storage->size() < needed) {
        storage->resize(std::min<size_t>(std::max(needed, 2 * storage->size()),
                                         static_cast<size_t>(max_positions_ * row_size_)));
      }
    }
  }
  seq.length = new_length;
  return absl::OkStatus();
}

void ContiguousKvCache::Write(int64_t layer, SequenceId sequence, int64_t begin, int64_t count,
                              const float* keys, const float* values) {
  Sequence& seq = sequences_.at(sequence);
  const size_t bytes = sizeof(float) * count * row_size_;
  std::memcpy(seq.keys[layer].data() + begin * row_size_, keys, bytes);
  std::memcpy(seq.values[layer].data() + begin * row_size_, values, bytes);
}

std::vector<kernels::KvBlock> ContiguousKvCache::Blocks(int64_t layer, SequenceId sequence) const {
  const Sequence& seq = sequences_.at(sequence);
  return {kernels::KvBlock{seq.keys[layer].data(), seq.values[layer].data(), seq.length}};
}

}  // namespace flatfleet::engine
