// The storage of a paged KV cache: fixed-size blocks of every layer's keys and values, owned by
// the backend (host memory for the CPU reference, device memory for CUDA). Which sequence owns
// which block is the cache's business (worker/model/paged_kv_cache.h); backends only read and
// write slots through the step's slot mapping and block tables.
#pragma once

#include <cstdint>

#include "absl/status/status.h"

namespace flatfleet::kernels {

enum class KvDtype {
  kFloat32,   // CPU reference
  kBFloat16,  // the GPU's default
  kInt8,      // codes with one FP16 scale per position and KV head (kernels/cpu/kv_quantization.h)
};

struct KvPoolShape {
  int64_t num_layers = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;
  int64_t block_size = 16;  // positions per block
  KvDtype dtype = KvDtype::kFloat32;

  int64_t row_size() const { return num_kv_heads * head_dim; }
  // Keys and values of all layers for one block, scales included.
  int64_t bytes_per_block() const;
};

absl::Status ValidateKvPoolShape(const KvPoolShape& shape);

class KvPool {
 public:
  virtual ~KvPool() = default;
  const KvPoolShape& shape() const { return shape_; }
  int64_t num_blocks() const { return num_blocks_; }
  // Adds blocks (ids num_blocks() ...). Host pools only, and only between steps; device pools
  // are sized once from free memory and answer FailedPrecondition.
  virtual absl::Status Grow(int64_t additional_blocks) = 0;
  // Unique per pool in the process (captured CUDA graphs are valid for one pool only).
  int64_t serial() const { return serial_; }

 protected:
  KvPool(const KvPoolShape& shape, int64_t num_blocks)
      : shape_(shape), num_blocks_(num_blocks), serial_(NextSerial()) {}
  KvPoolShape shape_;
  int64_t num_blocks_;

 private:
  static int64_t NextSerial();
  int64_t serial_;
};

}  // namespace flatfleet::kernels
