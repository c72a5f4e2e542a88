// A KV cache holding each sequence's keys and values in one growable array per layer.
#pragma once

#include <map>

#include "worker/model/kv_cache.h"

namespace flatfleet::engine {

class ContiguousKvCache final : public KvCache {
 public:
  // `row_size` = num_kv_heads * head_dim; `max_positions` caps each sequence's length.
  ContiguousKvCache(int64_t num_layers, int64_t row_size, int64_t max_positions);

  absl::StatusOr<SequenceId> AddSequence() override;
  void RemoveSequence(SequenceId sequence) override;
  bool Contains(SequenceId sequence) const override;
  int64_t Length(SequenceId sequence) const override;
  absl::Status Append(SequenceId sequence, int64_t count) override;
  void Write(int64_t layer, SequenceId sequence, int64_t begin, int64_t count, const float* keys,
             const float* values) override;
  std::vector<kernels::KvBlock> Blocks(int64_t layer, SequenceId sequence) const override;

 private:
  struct Sequence {
    int64_t length = 0;
    std::vector<std::vector<float>> keys;  // per layer, [capacity, row_size]
    std::vector<std::vector<float>> values;
  };

  int64_t num_layers_;
  int64_t row_size_;
  int64_t max_positions_;
  SequenceId next_id_ = 0;
  std::map<SequenceId, Sequence> sequences_;
};

}  // namespace flatfleet::engine
