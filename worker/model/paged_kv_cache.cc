#include "worker/model/paged_kv_cache.h"

#include <algorithm>
#include <cstring>
#include <memory>

#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/host_kv_pool.h"

namespace flatfleet::engine {
namespace {

absl::Status ValidateShape(const PagedKvCacheShape& shape) {
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
  if (shape.head_dim > 0 && shape.row_size % shape.head_dim != 0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("paged KV cache: head_dim %d does not divide the row size %d",
                        shape.head_dim, shape.row_size));
  }
  return absl::OkStatus();
}

}  // namespace

kernels::KvPoolShape ToPoolShape(const PagedKvCacheShape& shape) {
  const int64_t head_dim = shape.head_dim > 0 ? shape.head_dim : shape.row_size;
  kernels::KvDtype dtype = kernels::KvDtype::kFloat32;
  if (shape.dtype == KvCacheDtype::kInt8) dtype = kernels::KvDtype::kInt8;
  if (shape.dtype == KvCacheDtype::kBFloat16) dtype = kernels::KvDtype::kBFloat16;
  return {shape.num_layers, head_dim == 0 ? 0 : shape.row_size / head_dim, head_dim,
          shape.block_size, dtype};
}

absl::StatusOr<std::unique_ptr<PagedKvCache>> PagedKvCache::Create(kernels::Backend& backend,
                                                                   const PagedKvCacheShape& shape,
                                                                   int64_t num_blocks) {
  FF_RETURN_IF_ERROR(ValidateShape(shape));
  if (num_blocks <= 0 || num_blocks > INT32_MAX / shape.block_size) {
    return absl::InvalidArgumentError(
        absl::StrFormat("paged KV cache: %d blocks is not a usable pool size", num_blocks));
  }
  FF_ASSIGN_OR_RETURN(std::unique_ptr<kernels::KvPool> pool,
                      backend.CreateKvPool(ToPoolShape(shape), num_blocks));
  return std::unique_ptr<PagedKvCache>(new PagedKvCache(shape, std::move(pool)));
}

absl::StatusOr<std::unique_ptr<PagedKvCache>> PagedKvCache::Create(const PagedKvCacheShape& shape,
                                                                   int64_t num_blocks) {
  return Create(kernels::cpu::DefaultCpuBackend(), shape, num_blocks);
}

int64_t PagedKvCache::BytesPerBlock(const PagedKvCacheShape& shape) {
  return ToPoolShape(shape).bytes_per_block();
}

absl::StatusOr<std::unique_ptr<PagedKvCache>> PagedKvCache::CreateWithBytes(
    kernels::Backend& backend, const PagedKvCacheShape& shape, int64_t bytes) {
  FF_RETURN_IF_ERROR(ValidateShape(shape));
  const int64_t per_block = BytesPerBlock(shape);
  if (per_block <= 0 || bytes < per_block) {
    return absl::InvalidArgumentError(
        absl::StrFormat("paged KV cache: %d bytes hold no block of %d bytes", bytes, per_block));
  }
  return Create(backend, shape, bytes / per_block);
}

absl::StatusOr<std::unique_ptr<PagedKvCache>> PagedKvCache::CreateWithBytes(
    const PagedKvCacheShape& shape, int64_t bytes) {
  return CreateWithBytes(kernels::cpu::DefaultCpuBackend(), shape, bytes);
}

PagedKvCache::PagedKvCache(const PagedKvCacheShape& shape, std::unique_ptr<kernels::KvPool> pool)
    : shape_(shape), pool_(std::move(pool)) {
  const int64_t num_blocks = pool_->num_blocks();
  free_list_.reserve(num_blocks);
  block_users_.assign(num_blocks, 0);
  for (int64_t block = num_blocks - 1; block >= 0; --block) {
    free_list_.push_back(static_cast<int32_t>(block));
  }
}

int64_t PagedKvCache::BlocksFor(int64_t positions) const {
  return (positions + shape_.block_size - 1) / shape_.block_size;
}

absl::StatusOr<SequenceId> PagedKvCache::AddSequence() {
  const SequenceId id = next_id_++;
  sequences_[id];
  return id;
}

absl::StatusOr<SequenceId> PagedKvCache::Fork(SequenceId parent, int64_t positions) {
  auto it = sequences_.find(parent);
  if (it == sequences_.end()) {
    return absl::NotFoundError(
        absl::StrFormat("paged KV cache: cannot fork unknown sequence %d", parent));
  }
  if (positions < 0 || positions % shape_.block_size != 0 || positions > it->second.length) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "paged KV cache: a fork shares whole blocks: %d positions is not a multiple of %d "
        "within sequence %d's %d",
        positions, shape_.block_size, parent, it->second.length));
  }
  const SequenceId id = next_id_++;
  Sequence& child = sequences_[id];
  const std::vector<int32_t>& table = sequences_.at(parent).block_table;
  child.block_table.assign(table.begin(), table.begin() + positions / shape_.block_size);
  child.length = positions;
  for (int32_t block : child.block_table) ++block_users_[block];
  return id;
}

void PagedKvCache::RemoveSequence(SequenceId sequence) {
  auto it = sequences_.find(sequence);
  if (it == sequences_.end()) return;
  // Return blocks in reverse so the sequence's first block is handed out first next time; a
  // block another sequence still shares stays out of the pool.
  const std::vector<int32_t>& table = it->second.block_table;
  for (auto block = table.rbegin(); block != table.rend(); ++block) {
    if (--block_users_[*block] == 0) free_list_.push_back(*block);
  }
  sequences_.erase(it);
}

bool PagedKvCache::Contains(SequenceId sequence) const { return sequences_.contains(sequence); }

int64_t PagedKvCache::Length(SequenceId sequence) const { return sequences_.at(sequence).length; }

std::span<const int32_t> PagedKvCache::BlockTable(SequenceId sequence) const {
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
  if (shape_.max_positions_per_sequence > 0 &&
      seq.length + count > shape_.max_positions_per_sequence) {
    return absl::OutOfRangeError(
        absl::StrFormat("KV cache: sequence %d would have %d positions, more than the cache's %d",
                        sequence, seq.length + count, shape_.max_positions_per_sequence));
  }
  const int64_t needed = BlocksToAppend(sequence, count);
  if (needed > free_blocks() && shape_.growable) {
    const int64_t old_blocks = pool_->num_blocks();
    const int64_t grow = std::max(needed - free_blocks(), old_blocks);
    FF_RETURN_IF_ERROR(pool_->Grow(grow));
    block_users_.resize(old_blocks + grow, 0);
    for (int64_t block = old_blocks + grow - 1; block >= old_blocks; --block) {
      free_list_.insert(free_list_.begin(), static_cast<int32_t>(block));
    }
  }
  if (needed > free_blocks()) {
    return absl::ResourceExhaustedError(absl::StrFormat(
        "paged KV cache: sequence %d needs %d more blocks for %d positions, %d of %d are free",
        sequence, needed, count, free_blocks(), total_blocks()));
  }
  for (int64_t i = 0; i < needed; ++i) {
    seq.block_table.push_back(free_list_.back());
    block_users_[free_list_.back()] = 1;
    free_list_.pop_back();
  }
  peak_used_blocks_ = std::max(peak_used_blocks_, used_blocks());
  seq.length += count;
  return absl::OkStatus();
}

void PagedKvCache::Write(int64_t layer, SequenceId sequence, int64_t begin, int64_t count,
                         const float* keys, const float* values) {
  const Sequence& seq = sequences_.at(sequence);
  std::vector<int32_t> slots(count);
  for (int64_t i = 0; i < count; ++i) {
    const int64_t position = begin + i;
    slots[i] =
        static_cast<int32_t>(seq.block_table[position / shape_.block_size] * shape_.block_size +
                             position % shape_.block_size);
  }
  static_cast<kernels::cpu::HostKvPool&>(*pool_).Write(layer, slots, keys, shape_.row_size, values,
                                                       shape_.row_size);
}

std::vector<kernels::KvBlock> PagedKvCache::Blocks(int64_t layer, SequenceId sequence) const {
  const Sequence& seq = sequences_.at(sequence);
  return static_cast<const kernels::cpu::HostKvPool&>(*pool_).Blocks(layer, seq.block_table,
                                                                     seq.length);
}

}  // namespace flatfleet::engine
