#include "kernels/cuda/kv_cache_layer.h"

#include <cstdint>
#include <limits>
#include <string>

#include "absl/strings/str_cat.h"

namespace flatfleet::cuda {

absl::Status ValidateKvCacheLayer(const KvCacheLayer& cache, int64_t num_kv_heads, int64_t head_dim,
                                  const char* kernel) {
  constexpr int64_t kMaxInt32 = std::numeric_limits<int32_t>::max();
  auto invalid = [kernel](const char* field, const std::string& why) {
    return absl::InvalidArgumentError(absl::StrCat(kernel, ": ", field, " ", why));
  };
  if (cache.num_kv_heads != num_kv_heads) {
    return invalid(
        "cache.num_kv_heads",
        absl::StrCat("= ", cache.num_kv_heads, " differs from num_kv_heads = ", num_kv_heads));
  }
  if (cache.head_dim != head_dim) {
    return invalid("cache.head_dim",
                   absl::StrCat("= ", cache.head_dim, " differs from head_dim = ", head_dim));
  }
  if (cache.block_size <= 0) return invalid("cache.block_size", "must be positive");
  if (cache.num_blocks <= 0) return invalid("cache.num_blocks", "must be positive");
  if (cache.num_blocks > kMaxInt32 / cache.block_size) {
    return invalid("cache.num_blocks", "* block_size exceeds int32 slots");
  }
  if (cache.keys == nullptr) return invalid("cache.keys", "is null");
  if (cache.values == nullptr) return invalid("cache.values", "is null");
  if (cache.int8 && cache.key_scales == nullptr) return invalid("cache.key_scales", "is null");
  if (cache.int8 && cache.value_scales == nullptr) return invalid("cache.value_scales", "is null");
  return absl::OkStatus();
}

}  // namespace flatfleet::cuda
