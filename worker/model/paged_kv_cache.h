// A KV cache that stores keys and values in fixed-size blocks taken from one preallocated pool.
// Each sequence owns a block table; blocks return to the pool when the sequence is removed, so
// memory is bounded up front and shared between sequences without fragmentation.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/model/kv_cache.h"

namespace flatfleet::engine {

// float32, or INT8 codes with one FP16 scale per position and KV head
// (kernels/cpu/kv_quantization.h): about 3.9x smaller at head_dim 128.
enum class KvCacheDtype { kFloat32, kInt8 };

struct PagedKvCacheShape {
  int64_t num_layers = 0;
  int64_t row_size = 0;     // values per position and layer: LlamaModel::kv_row_size()
  int64_t block_size = 16;  // positions per block
  KvCacheDtype dtype = KvCacheDtype::kFloat32;
  int64_t head_dim = 0;  // INT8 only: row_size must be a multiple (one scale per head)
};

class PagedKvCache final : public KvCache {
 public:
  // A pool of `num_blocks` blocks; every block holds `block_size` positions of every layer.
  static absl::StatusOr<std::unique_ptr<PagedKvCache>> Create(const PagedKvCacheShape& shape,
                                                              int64_t num_blocks);
  // As many blocks as fit in `bytes` (keys and values of all layers, in the shape's dtype).
  static absl::StatusOr<std::unique_ptr<PagedKvCache>> CreateWithBytes(
      const PagedKvCacheShape& shape, int64_t bytes);
  static int64_t BytesPerBlock(const PagedKvCacheShape& shape);

  absl::StatusOr<SequenceId> AddSequence() override;
  void RemoveSequence(SequenceId sequence) override;
  bool Contains(SequenceId sequence) const override;
  int64_t Length(SequenceId sequence) const override;
  // Fails with ResourceExhausted, changing nothing, when the pool lacks the blocks.
  absl::Status Append(SequenceId sequence, int64_t count) override;
  void Write(int64_t layer, SequenceId sequence, int64_t begin, int64_t count, const float* keys,
             const float* values) override;
  // One KvBlock per run of physically adjacent blocks.
  std::vector<kernels::KvBlock> Blocks(int64_t layer, SequenceId sequence) const override;

  int64_t block_size() const { return shape_.block_size; }
  int64_t total_blocks() const { return num_blocks_; }
  int64_t free_blocks() const { return static_cast<int64_t>(free_list_.size()); }
  int64_t used_blocks() const { return num_blocks_ - free_blocks(); }
  // Blocks a sequence of `positions` positions occupies.
  int64_t BlocksFor(int64_t positions) const;
  // Extra blocks that Append(sequence, count) would take from the pool.
  int64_t BlocksToAppend(SequenceId sequence, int64_t count) const;
  // The sequence's physical block ids, in position order (for tests and debugging).
  const std::vector<int32_t>& BlockTable(SequenceId sequence) const;

 private:
  PagedKvCache(const PagedKvCacheShape& shape, int64_t num_blocks);

  struct Sequence {
    int64_t length = 0;
    std::vector<int32_t> block_table;
  };

  // Start of `block` of `layer` in keys_ / values_: layers are outermost, so consecutive block
  // ids of one layer are adjacent in memory and Blocks() can merge them.
  size_t Offset(int64_t layer, int64_t block) const;

  PagedKvCacheShape shape_;
  int64_t num_blocks_;
  int64_t heads_per_row() const;

  std::vector<float> keys_;  // float32: [layer, block, position in block, row_size]
  std::vector<float> values_;
  std::vector<int8_t> key_codes_;  // INT8: codes as keys_, scales [layer, block, position, head]
  std::vector<int8_t> value_codes_;
  std::vector<uint16_t> key_scales_;
  std::vector<uint16_t> value_scales_;
  std::vector<int32_t> free_list_;  // a stack; the lowest ids are handed out first
  SequenceId next_id_ = 0;
  std::map<SequenceId, Sequence> sequences_;
};

}  // namespace flatfleet::engine
