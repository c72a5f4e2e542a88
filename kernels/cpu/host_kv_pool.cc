#include "kernels/cpu/host_kv_pool.h"

#include <cstring>

#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "kernels/cpu/kv_quantization.h"

namespace flatfleet::kernels::cpu {

absl::StatusOr<std::unique_ptr<HostKvPool>> HostKvPool::Create(const KvPoolShape& shape,
                                                               int64_t num_blocks) {
  FF_RETURN_IF_ERROR(ValidateKvPoolShape(shape));
  if (shape.dtype == KvDtype::kBFloat16) {
    return absl::InvalidArgumentError(
        "KV pool: the CPU backends store float32 or INT8 keys and values, not bfloat16");
  }
  if (num_blocks <= 0 || num_blocks > INT32_MAX / shape.block_size) {
    return absl::InvalidArgumentError(
        absl::StrFormat("paged KV cache: %d blocks is not a usable pool size", num_blocks));
  }
  return std::unique_ptr<HostKvPool>(new HostKvPool(shape, num_blocks));
}

HostKvPool::HostKvPool(const KvPoolShape& shape, int64_t num_blocks) : KvPool(shape, num_blocks) {
  const size_t layers = static_cast<size_t>(shape.num_layers);
  if (shape.dtype == KvDtype::kInt8) {
    key_codes_.resize(layers);
    value_codes_.resize(layers);
    key_scales_.resize(layers);
    value_scales_.resize(layers);
  } else {
    keys_.resize(layers);
    values_.resize(layers);
  }
  Resize();
}

void HostKvPool::Resize() {
  const size_t positions = static_cast<size_t>(num_blocks_ * shape_.block_size);
  const size_t elements = positions * shape_.row_size();
  const size_t scales = positions * shape_.num_kv_heads;
  for (int64_t l = 0; l < shape_.num_layers; ++l) {
    if (shape_.dtype == KvDtype::kInt8) {
      key_codes_[l].resize(elements, 0);
      value_codes_[l].resize(elements, 0);
      key_scales_[l].resize(scales, 0);
      value_scales_[l].resize(scales, 0);
    } else {
      keys_[l].resize(elements, 0.0f);
      values_[l].resize(elements, 0.0f);
    }
  }
}

absl::Status HostKvPool::Grow(int64_t additional_blocks) {
  if (additional_blocks < 0 || num_blocks_ + additional_blocks > INT32_MAX / shape_.block_size) {
    return absl::InvalidArgumentError(
        absl::StrFormat("KV pool: cannot grow by %d blocks", additional_blocks));
  }
  num_blocks_ += additional_blocks;
  Resize();
  return absl::OkStatus();
}

void HostKvPool::Write(int64_t layer, std::span<const int32_t> slots, const float* keys,
                       int64_t key_stride, const float* values, int64_t value_stride) {
  const int64_t row = shape_.row_size();
  for (size_t i = 0; i < slots.size(); ++i) {
    if (slots[i] < 0) continue;
    const size_t offset = static_cast<size_t>(slots[i]) * row;
    const float* k = keys + i * key_stride;
    const float* v = values + i * value_stride;
    if (shape_.dtype == KvDtype::kInt8) {
      const size_t scale_offset = static_cast<size_t>(slots[i]) * shape_.num_kv_heads;
      QuantizeKvRows(k, 1, shape_.num_kv_heads, shape_.head_dim, key_codes_[layer].data() + offset,
                     key_scales_[layer].data() + scale_offset);
      QuantizeKvRows(v, 1, shape_.num_kv_heads, shape_.head_dim,
                     value_codes_[layer].data() + offset,
                     value_scales_[layer].data() + scale_offset);
    } else {
      std::memcpy(keys_[layer].data() + offset, k, sizeof(float) * row);
      std::memcpy(values_[layer].data() + offset, v, sizeof(float) * row);
    }
  }
}

std::vector<KvBlock> HostKvPool::Blocks(int64_t layer, std::span<const int32_t> block_table,
                                        int64_t length) const {
  std::vector<KvBlock> blocks;
  const int64_t row = shape_.row_size();
  int64_t remaining = length;
  for (size_t i = 0; i < block_table.size() && remaining > 0; ++i) {
    const int64_t positions = std::min(remaining, shape_.block_size);
    remaining -= positions;
    if (!blocks.empty() && block_table[i] == block_table[i - 1] + 1) {
      blocks.back().num_positions += positions;  // physically follows the previous block
      continue;
    }
    const size_t first = static_cast<size_t>(block_table[i] * shape_.block_size);
    KvBlock block;
    block.num_positions = positions;
    if (shape_.dtype == KvDtype::kInt8) {
      block.key_codes = key_codes_[layer].data() + first * row;
      block.value_codes = value_codes_[layer].data() + first * row;
      block.key_scales = key_scales_[layer].data() + first * shape_.num_kv_heads;
      block.value_scales = value_scales_[layer].data() + first * shape_.num_kv_heads;
    } else {
      block.keys = keys_[layer].data() + first * row;
      block.values = values_[layer].data() + first * row;
    }
    blocks.push_back(block);
  }
  return blocks;
}

}  // namespace flatfleet::kernels::cpu
