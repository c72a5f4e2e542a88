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
  // A new sequence whose first `positions` positions are the parent's, sharing the parent's
  // storage instead of recomputing it (n > 1 choices of one prompt). Caches that cannot share
  // answer Unimplemented and the caller computes those positions itself.
  virtual absl::StatusOr<SequenceId> Fork(SequenceId /*parent*/, int64_t /*positions*/) {
    return absl::UnimplementedError("this KV cache cannot share positions between sequences");
  }
  // Frees the sequence's storage, except what a forked sequence still shares.
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
