// KV storage in host memory for the CPU backends: per layer, [block, position, kv head, head_dim]
// float32 values, or INT8 codes in that layout with FP16 scales [block, position, kv head]
// (kv_quantization.h). Each layer is its own array, so growing appends blocks without moving
// the ones in use.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "kernels/backend.h"
#include "kernels/kv_pool.h"

namespace flatfleet::kernels::cpu {

class HostKvPool final : public KvPool {
 public:
  // Float32 or INT8 (bfloat16 is the GPU's format).
  static absl::StatusOr<std::unique_ptr<HostKvPool>> Create(const KvPoolShape& shape,
                                                            int64_t num_blocks);
  absl::Status Grow(int64_t additional_blocks) override;

  // Stores `count` rows of keys and values (each num_kv_heads * head_dim floats) of `layer`; row
  // i goes to physical slot slots[i] (skipped when negative).
  void Write(int64_t layer, std::span<const int32_t> slots, const float* keys, int64_t key_stride,
             const float* values, int64_t value_stride);
  // Blocks covering positions [0, length) of a sequence with this block table, one KvBlock per
  // run of physically adjacent blocks.
  std::vector<KvBlock> Blocks(int64_t layer, std::span<const int32_t> block_table,
                              int64_t length) const;

 private:
  HostKvPool(const KvPoolShape& shape, int64_t num_blocks);
  void Resize();

  std::vector<std::vector<float>> keys_, values_;             // float32, per layer
  std::vector<std::vector<int8_t>> key_codes_, value_codes_;  // INT8, per layer
  std::vector<std::vector<uint16_t>> key_scales_, value_scales_;
};

}  // namespace flatfleet::kernels::cpu
