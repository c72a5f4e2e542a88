#include "worker/model/paged_kv_cache.h"

#include <algorithm>
#include <cstring>
#include <memory>

#include "absl/strings/str_format.h"
#include "kernels/cpu/kv_quantization.h"

namespace flatfleet::engine {

absl::StatusOr<std::unique_ptr<PagedKvCache>> PagedKvCache::Create(const PagedKvCacheShape& shape,
                                                                   int64_t num_blocks) {
  if (shape.num_layers <= 0 || shape.row_size <= 0 || shape.block_size <= 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "paged KV cache: layers (%d), row size (%d) and block size (%d) must be positive",
        shape.num_layers, shape.row_size, shape.block_size));
  }
  if (shape.dtype == KvCacheDtype::kInt8 &&
      (shape.head_dim <= 0 || shape.row_size % shape.head_dim != 0)) {
    return absl::InvalidArgumentError(
        absl::StrFormat("paged KV cache: INT8 needs a head_dim (%d) that divides the row size (%d)",
                        shape.head_dim, shape.row_size));
  }
  if (num_blocks <= 0 || num_blocks > INT32_MAX) {
    return absl::InvalidArgumentError(
        absl::StrFormat("paged KV cache: %d blocks is not a usable pool size", num_blocks));
  }
  return std::unique_ptr<PagedKvCache>(new PagedKvCache(shape, num_blocks));
}

int64_t PagedKvCache::BytesPerBlock(const PagedKvCacheShape& shape) {
  int64_t bytes_per_row = shape.row_size * static_cast<int64_t>(sizeof(float));
  if (shape.dtype == KvCacheDtype::kInt8 && shape.head_dim > 0) {
    bytes_per_row = shape.row_size + shape.row_size / shape.head_dim * 2;  // codes + FP16 scales
  }
  return 2 * shape.num_layers * shape.block_size * bytes_per_row;
}

int64_t PagedKvCache::heads_per_row() const {
  return shape_.dtype == KvCacheDtype::kInt8 ? shape_.row_size / shape_.head_dim : 0;
}

absl::StatusOr<std::unique_ptr<PagedKvCache>> PagedKvCache::CreateWithBytes(
    const PagedKvCacheShape& shape, int64_t bytes) {
  const int64_t per_block = BytesPerBlock(shape);
  if (per_block <= 0 || bytes < per_block) {
    return absl::InvalidArgumentError(
        absl::StrFormat("paged KV cache: %d bytes hold no block of %d bytes", bytes, per_block));
  }
  return Create(shape, bytes / per_block);
}

PagedKvCache::PagedKvCache(const PagedKvCacheShape& shape, int64_t num_blocks)
    : shape_(shape), num_blocks_(num_blocks) {
  const size_t elements =
      static_cast<size_t>(shape.num_layers * num_blocks * shape.block_size * shape.row_size);
  if (shape.dtype == KvCacheDtype::kInt8) {
    const size_t scales = elements / static_cast<size_t>(shape.head_dim);
    key_codes_.assign(elements, 0);
    value_codes_.assign(elements, 0);
    key_scales_.assign(scales, 0);
    value_scales_.assign(scales, 0);
  } else {
    keys_.assign(elements, 0.0f);
    values_.assign(elements, 0.0f);
  }
  free_list_.reserve(num_blocks);
  for (int64_t block = num_blocks - 1; block >= 0; --block) {
    free_list_.push_back(static_cast<int32_t>(block));
  }
}

size_t PagedKvCache::Offset(int64_t layer, int64_t block) const {
  return static_cast<size_t>(((layer * num_blocks_) + block) * shape_.block_size * shape_.row_size);
}

int64_t PagedKvCache::BlocksFor(int64_t positions) const {
  return (positions + shape_.block_size - 1) / shape_.block_size;
}

absl::StatusOr<SequenceId> PagedKvCache::AddSequence() {
  const SequenceId id = next_id_++;
  sequences_[id];
  return id;
}

void PagedKvCache::RemoveSequence(SequenceId sequence) {
  auto it = sequences_.find(sequence);
  if (it == sequences_.end()) return;
  // Return blocks in reverse so the sequence's first block is handed out first next time.
  const std::vector<int32_t>& table = it->second.block_table;
  free_list_.insert(free_list_.end(), table.rbegin(), table.rend());
  sequences_.erase(it);
}

bool PagedKvCache::Contains(SequenceId sequence) const { return sequences_.contains(sequence); }

int64_t PagedKvCache::Length(SequenceId sequence) const { return sequences_.at(sequence).length; }

const std::vector<int32_t>& PagedKvCache::BlockTable(SequenceId sequence) const {
  return sequences_.at(sequence).block_table;
}

int64_t PagedKvCache::BlocksToAppend(SequenceId sequence, int64_t count) const {
  const Sequence& seq = sequences_.at(sequence);
  return BlocksFor(seq.length + count) - static_cast<int64_t>(seq.block_table.size());
}

absl::Status PagedKvCache::Append(SequenceId sequence, int64_t count) {
  auto it = sequences_.find(sequence);
  if (it == sequences_.end()) {
    return absl::NotFoundError(absl::StrFormat("paged KV cache: unknown sequence %d", sequence));
  }
  if (count < 0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("paged KV cache: cannot append %d positions", count));
  }
  Sequence& seq = it->second;
  const int64_t needed = BlocksToAppend(sequence, count);
  if (needed > free_blocks()) {
    return absl::ResourceExhaustedError(absl::StrFormat(
        "paged KV cache: sequence %d needs %d more blocks for %d positions, %d of %d are free",
        sequence, needed, count, free_blocks(), num_blocks_));
  }
  for (int64_t i = 0; i < needed; ++i) {
    seq.block_table.push_back(free_list_.back());
    free_list_.pop_back();
  }
  seq.length += count;
  return absl::OkStatus();
}

void PagedKvCache::Write(int64_t layer, SequenceId sequence, int64_t begin, int64_t count,
                         const float* keys, const float* values) {
  const Sequence& seq = sequences_.at(sequence);
  const int64_t row = shape_.row_size;
  // Copy block by block: a run of positions may span several physical blocks.
  for (int64_t done = 0; done < count;) {
    const int64_t position = begin + done;
    const int64_t in_block = position % shape_.block_size;
    const int64_t run = std::min(count - done, shape_.block_size - in_block);
    const size_t offset =
        Offset(layer, seq.block_table[position / shape_.block_size]) + in_block * row;
    if (shape_.dtype == KvCacheDtype::kInt8) {
      const int64_t heads = heads_per_row();
      const size_t scale_offset = offset / static_cast<size_t>(shape_.head_dim);
      kernels::cpu::QuantizeKvRows(keys + done * row, run, heads, shape_.head_dim,
                                   key_codes_.data() + offset, key_scales_.data() + scale_offset);
      kernels::cpu::QuantizeKvRows(values + done * row, run, heads, shape_.head_dim,
                                   value_codes_.data() + offset,
                                   value_scales_.data() + scale_offset);
    } else {
      const size_t bytes = sizeof(float) * run * row;
      std::memcpy(keys_.data() + offset, keys + done * row, bytes);
      std::memcpy(values_.data() + offset, values + done * row, bytes);
    }
    done += run;
  }
}

std::vector<kernels::KvBlock> PagedKvCache::Blocks(int64_t layer, SequenceId sequence) const {
  const Sequence& seq = sequences_.at(sequence);
  std::vector<kernels::KvBlock> blocks;
  int64_t remaining = seq.length;
  for (size_t i = 0; i < seq.block_table.size() && remaining > 0; ++i) {
    const int64_t positions = std::min(remaining, shape_.block_size);
    remaining -= positions;
    if (!blocks.empty() && seq.block_table[i] == seq.block_table[i - 1] + 1) {
      blocks.back().num_positions += positions;  // physically follows the previous block
      continue;
    }
    const size_t offset = Offset(layer, seq.block_table[i]);
    kernels::KvBlock block;
    block.num_positions = positions;
    if (shape_.dtype == KvCacheDtype::kInt8) {
      const size_t scale_offset = offset / static_cast<size_t>(shape_.head_dim);
      block.key_codes = key_codes_.data() + offset;
      block.value_codes = value_codes_.data() + offset;
      block.key_scales = key_scales_.data() + scale_offset;
      block.value_scales = value_scales_.data() + scale_offset;
    } else {
      block.keys = keys_.data() + offset;
      block.values = values_.data() + offset;
    }
    blocks.push_back(block);
  }
  return blocks;
}

}  // namespace flatfleet::engine
