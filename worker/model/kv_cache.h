// Per-sequence key/value storage for attention. The model only talks to this interface, so a
// paged cache (fixed-size blocks from a shared pool) can replace the contiguous one.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/backend.h"

namespace flatfleet::engine {

using SequenceId = int64_t;

class KvCache {
 public:
  virtual ~KvCache() = default;

  virtual absl::StatusOr<SequenceId> AddSequence() = 0;
  virtual void RemoveSequence(SequenceId sequence) = 0;
  virtual bool Contains(SequenceId sequence) const = 0;
  // Positions stored (or reserved by Append) for the sequence.
  virtual int64_t Length(SequenceId sequence) const = 0;

  // Reserves `count` more positions at the end of the sequence (fails when the cache is full);
  // the forward pass then fills them layer by layer with Write.
  virtual absl::Status Append(SequenceId sequence, int64_t count) = 0;
  // Stores `count` rows of keys and values (each num_kv_heads * head_dim floats) for positions
  // [begin, begin + count) of `layer`.
  virtual void Write(int64_t layer, SequenceId sequence, int64_t begin, int64_t count,
                     const float* keys, const float* values) = 0;
  // Blocks covering positions [0, Length(sequence)) of `layer`, in order. Valid until the next
  // Append or RemoveSequence.
  virtual std::vector<kernels::KvBlock> Blocks(int64_t layer, SequenceId sequence) const = 0;
};

}  // namespace flatfleet::engine
