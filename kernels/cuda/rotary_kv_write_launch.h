// Raw launcher of the rotary + KV-write kernel (rotary_kv_write.cu). It checks nothing: callers go
// through RotaryKvWrite (rotary_kv_write.h), which validates the arguments first.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cuda/kv_cache_layer.h"

namespace flatfleet::cuda::internal {

inline constexpr int kRotaryMaxHeadDim = 256;

struct RotaryKvWriteArgs {
  const __nv_bfloat16* qkv = nullptr;
  const int32_t* positions = nullptr;
  const float* inv_freq = nullptr;
  const int32_t* slot_mapping = nullptr;
  __nv_bfloat16* q_out = nullptr;
  KvCacheLayer cache;
  int64_t num_slots = 0;  // num_blocks * block_size
  int32_t rows = 0, num_heads = 0, num_kv_heads = 0, head_dim = 0;
};
cudaError_t LaunchRotaryKvWrite(const RotaryKvWriteArgs& args, cudaStream_t stream);

}  // namespace flatfleet::cuda::internal
