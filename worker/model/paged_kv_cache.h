// A KV cache that stores keys and values in fixed-size blocks taken from one preallocated pool.
// Each sequence has a block table; blocks return to the pool when the sequence is removed, so
// memory is bounded up front and shared between sequences without fragmentation.
// Fork lets a sequence start with another's leading full blocks (the prompt of n > 1 choices):
// blocks are reference counted, only whole blocks are shared (a sharer never writes into a
// shared block, so no copy-on-write is needed) and a shared block counts once in the counts.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/backend.h"
#include "worker/model/kv_cache.h"

namespace flatfleet::engine {

// float32 (CPU), bfloat16 (GPU), or INT8 codes with one FP16 scale per position and KV head
// (kernels/cpu/kv_quantization.h): about 3.9x smaller than float32 at head_dim 128.
enum class KvCacheDtype { kFloat32, kInt8, kBFloat16 };

struct PagedKvCacheShape {
  int64_t num_layers = 0;
  int64_t row_size = 0;     // values per position and layer: LlamaModel::kv_row_size()
  int64_t block_size = 16;  // positions per block
  KvCacheDtype dtype = KvCacheDtype::kFloat32;
  int64_t head_dim = 0;  // row_size must be a multiple (one INT8 scale per head); 0: row_size
  // 0: any length; else Append refuses a sequence longer than this.
  int64_t max_positions_per_sequence = 0;
  // Host pools only: when the pool runs out, Append grows it instead of failing.
  bool growable = false;
};

// The kernels' pool shape of a cache shape.
kernels::KvPoolShape ToPoolShape(const PagedKvCacheShape& shape);

class PagedKvCache final : public KvCache {
 public:
  // A pool of `num_blocks` blocks on `backend`; every block holds `block_size` positions of
  // every layer.
  static absl::StatusOr<std::unique_ptr<PagedKvCache>> Create(kernels::Backend& backend,
                                                              const PagedKvCacheShape& shape,
                                                              int64_t num_blocks);
  // As many blocks as fit in `bytes` (keys and values of all layers, in the shape's dtype).
  static absl::StatusOr<std::unique_ptr<PagedKvCache>> CreateWithBytes(
      kernels::Backend& backend, const PagedKvCacheShape& shape, int64_t bytes);
  // On the host (the float32 CPU backend's pool).
  static absl::StatusOr<std::unique_ptr<PagedKvCache>> Create(const PagedKvCacheShape& shape,
                                                              int64_t num_blocks);
  static absl::StatusOr<std::unique_ptr<PagedKvCache>> CreateWithBytes(
      const PagedKvCacheShape& shape, int64_t bytes);
  static int64_t BytesPerBlock(const PagedKvCacheShape& shape);

  absl::StatusOr<SequenceId> AddSequence() override;
  // `positions` must be a multiple of block_size and at most the parent's length; the child's
  // Append then takes fresh blocks. Takes no block from the pool.
  absl::StatusOr<SequenceId> Fork(SequenceId parent, int64_t positions) override;
  void RemoveSequence(SequenceId sequence) override;
  bool Contains(SequenceId sequence) const override;
  int64_t Length(SequenceId sequence) const override;
  // Fails with ResourceExhausted, changing nothing, when the pool lacks the blocks.
  absl::Status Append(SequenceId sequence, int64_t count) override;
  std::span<const int32_t> BlockTable(SequenceId sequence) const override;
  int64_t block_size() const override { return shape_.block_size; }
  kernels::KvPool& pool() override { return *pool_; }
  const kernels::KvPool& pool() const override { return *pool_; }

  // Host pools only (tests): stores `count` rows of keys and values (each row_size floats) for
  // positions [begin, begin + count) of `layer`, and the blocks covering a sequence, one KvBlock
  // per run of physically adjacent blocks.
  void Write(int64_t layer, SequenceId sequence, int64_t begin, int64_t count, const float* keys,
             const float* values);
  std::vector<kernels::KvBlock> Blocks(int64_t layer, SequenceId sequence) const;

  int64_t total_blocks() const { return pool_->num_blocks(); }
  int64_t free_blocks() const { return static_cast<int64_t>(free_list_.size()); }
  int64_t used_blocks() const { return total_blocks() - free_blocks(); }
  // The most blocks in use at once since creation (a shared block counts once).
  int64_t peak_used_blocks() const { return peak_used_blocks_; }
  // Blocks a sequence of `positions` positions occupies.
  int64_t BlocksFor(int64_t positions) const;
  // Extra blocks that Append(sequence, count) would take from the pool.
  int64_t BlocksToAppend(SequenceId sequence, int64_t count) const;
  // Sequences whose tables hold `block` (0 when it is free).
  int32_t BlockUsers(int32_t block) const { return block_users_.at(block); }

 private:
  PagedKvCache(const PagedKvCacheShape& shape, std::unique_ptr<kernels::KvPool> pool);

  struct Sequence {
    int64_t length = 0;
    std::vector<int32_t> block_table;
  };

  PagedKvCacheShape shape_;
  std::unique_ptr<kernels::KvPool> pool_;
  std::vector<int32_t> free_list_;    // a stack; the lowest ids are handed out first
  std::vector<int32_t> block_users_;  // by block id: how many block tables hold it
  int64_t peak_used_blocks_ = 0;
  SequenceId next_id_ = 0;
  std::map<SequenceId, Sequence> sequences_;
};

}  // namespace flatfleet::engine
