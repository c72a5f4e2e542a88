// Rotary position embedding and the KV-cache write that follow the fused qkv projection, in one
// kernel: q and k are rotated (kernels/cpu/rotary.h numerics), q goes to q_out, the rotated k and
// the plain v go to the paged cache at each row's slot (INT8 caches: quantized per position and KV
// head from the float32 values, exactly as kernels/cpu/kv_quantization.h).
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/cuda/kv_cache_layer.h"

namespace flatfleet::cuda {

struct RotaryKvWriteParams {
  // [rows, (num_heads + 2 * num_kv_heads) * head_dim]: the q | k | v column blocks of the GEMM.
  const __nv_bfloat16* qkv = nullptr;
  const int32_t* positions = nullptr;     // [rows], device
  const float* inv_freq = nullptr;        // [head_dim / 2], device
  const int32_t* slot_mapping = nullptr;  // [rows], device; < 0: the row writes no cache entry
  __nv_bfloat16* q_out = nullptr;         // [rows, num_heads * head_dim], rotated q
  KvCacheLayer cache;                     // num_kv_heads and head_dim must match the fields below
  int64_t rows = 0;
  int64_t num_heads = 0, num_kv_heads = 0;
  int64_t head_dim = 0;  // even, at most 256
};

// Validates (InvalidArgument naming the field) and enqueues on `stream`. rows == 0 is a no-op.
// Slots at or beyond num_blocks * block_size are skipped like negative ones (never written).
absl::Status RotaryKvWrite(const RotaryKvWriteParams& params, cudaStream_t stream);

}  // namespace flatfleet::cuda
