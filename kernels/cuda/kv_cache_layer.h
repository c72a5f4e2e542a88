// One transformer layer's paged KV cache in device memory, as the engine allocates it. Keys and
// values are separate pools of `num_blocks` blocks of `block_size` positions; the position at
// offset o of block b lives in physical slot b * block_size + o.
//   bf16:  keys/values are __nv_bfloat16 [num_blocks, block_size, num_kv_heads, head_dim].
//   INT8:  keys/values are int8_t codes of that shape, key_scales/value_scales FP16 bits
//          [num_blocks, block_size, num_kv_heads]; an element is float(scale) * code, with the
//          codes and scales of kernels/cpu/kv_quantization.h (QuantizeKvRows).
#pragma once

#include <cstdint>

#include "absl/status/status.h"

namespace flatfleet::cuda {

struct KvCacheLayer {
  void* keys = nullptr;
  void* values = nullptr;
  uint16_t* key_scales = nullptr;    // INT8 only
  uint16_t* value_scales = nullptr;  // INT8 only
  bool int8 = false;
  int64_t num_blocks = 0, block_size = 0, num_kv_heads = 0, head_dim = 0;
};

// The checks every kernel that reads or writes a layer makes: the layer holds `num_kv_heads`
// heads of `head_dim`, its geometry is positive with every slot an int32, and its pools (and
// INT8 scales) are set. InvalidArgument "KERNEL: cache.FIELD ..." otherwise.
absl::Status ValidateKvCacheLayer(const KvCacheLayer& cache, int64_t num_kv_heads, int64_t head_dim,
                                  const char* kernel);

}  // namespace flatfleet::cuda
