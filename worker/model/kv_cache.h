// Per-sequence key/value bookkeeping for attention: which blocks of a backend-owned KV pool
// (kernels/kv_pool.h) each sequence holds. The model reads block tables from it to build the
// step; the backend's ops read and write the pool itself.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/kv_pool.h"

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

  // Reserves `count` more positions at the end of the sequence (fails, changing nothing, when the
  // cache is full); the forward pass then fills them layer by layer.
  virtual absl::Status Append(SequenceId sequence, int64_t count) = 0;

  // The sequence's physical block ids, in position order.
  virtual std::span<const int32_t> BlockTable(SequenceId sequence) const = 0;
  virtual int64_t block_size() const = 0;
  virtual kernels::KvPool& pool() = 0;
  virtual const kernels::KvPool& pool() const = 0;
};

}  // namespace flatfleet::engine
