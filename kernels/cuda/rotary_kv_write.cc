#include "kernels/cuda/rotary_kv_write.h"

#include <cstdint>
#include <limits>
#include <string>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/rotary_kv_write_launch.h"

namespace flatfleet::cuda {
namespace {

constexpr char kName[] = "RotaryKvWrite";
constexpr int64_t kMaxInt32 = std::numeric_limits<int32_t>::max();

absl::Status Invalid(const char* field, const std::string& why) {
  return absl::InvalidArgumentError(absl::StrCat(kName, ": ", field, " ", why));
}

}  // namespace

absl::Status RotaryKvWrite(const RotaryKvWriteParams& p, cudaStream_t stream) {
  if (p.rows < 0 || p.rows > kMaxInt32) return Invalid("rows", absl::StrCat("= ", p.rows));
  if (p.num_heads <= 0 || p.num_heads > 65535) {
    return Invalid("num_heads", absl::StrCat("= ", p.num_heads));
  }
  if (p.num_kv_heads <= 0 || p.num_kv_heads > 65535) {
    return Invalid("num_kv_heads", absl::StrCat("= ", p.num_kv_heads));
  }
  if (p.head_dim <= 0 || p.head_dim % 2 != 0 || p.head_dim > internal::kRotaryMaxHeadDim) {
    return Invalid("head_dim", absl::StrCat("must be even and at most ",
                                            internal::kRotaryMaxHeadDim, ", got ", p.head_dim));
  }
  const KvCacheLayer& cache = p.cache;
  if (auto status = ValidateKvCacheLayer(cache, p.num_kv_heads, p.head_dim, kName); !status.ok()) {
    return status;
  }
  for (auto [name, pointer] : {std::tuple<const char*, const void*>{"qkv", p.qkv},
                               {"positions", p.positions},
                               {"inv_freq", p.inv_freq},
                               {"slot_mapping", p.slot_mapping},
                               {"q_out", p.q_out}}) {
    if (pointer == nullptr) return Invalid(name, "is null");
  }
  if (p.rows == 0) return absl::OkStatus();

  internal::RotaryKvWriteArgs args;
  args.qkv = p.qkv;
  args.positions = p.positions;
  args.inv_freq = p.inv_freq;
  args.slot_mapping = p.slot_mapping;
  args.q_out = p.q_out;
  args.cache = cache;
  args.num_slots = cache.num_blocks * cache.block_size;
  args.rows = static_cast<int32_t>(p.rows);
  args.num_heads = static_cast<int32_t>(p.num_heads);
  args.num_kv_heads = static_cast<int32_t>(p.num_kv_heads);
  args.head_dim = static_cast<int32_t>(p.head_dim);
  const cudaError_t error = internal::LaunchRotaryKvWrite(args, stream);
  if (error != cudaSuccess) {
    return absl::InternalError(absl::StrCat(kName, " launch: ", cudaGetErrorString(error)));
  }
  return absl::OkStatus();
}

}  // namespace flatfleet::cuda
