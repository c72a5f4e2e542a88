#include "kernels/kv_pool.h"

#include <atomic>

#include "absl/strings/str_format.h"

namespace flatfleet::kernels {

int64_t KvPoolShape::bytes_per_block() const {
  int64_t bytes_per_row = 0;
  switch (dtype) {
    case KvDtype::kFloat32:
      bytes_per_row = row_size() * 4;
      break;
    case KvDtype::kBFloat16:
      bytes_per_row = row_size() * 2;
      break;
    case KvDtype::kInt8:
      bytes_per_row = row_size() + num_kv_heads * 2;  // codes + FP16 scales
      break;
  }
  return 2 * num_layers * block_size * bytes_per_row;
}

int64_t KvPool::NextSerial() {
  static std::atomic<int64_t> next{0};
  return next++;
}

absl::Status ValidateKvPoolShape(const KvPoolShape& shape) {
  if (shape.num_layers <= 0 || shape.num_kv_heads <= 0 || shape.head_dim <= 0 ||
      shape.block_size <= 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "KV pool: layers (%d), KV heads (%d), head_dim (%d) and block size (%d) must be positive",
        shape.num_layers, shape.num_kv_heads, shape.head_dim, shape.block_size));
  }
  return absl::OkStatus();
}

}  // namespace flatfleet::kernels
