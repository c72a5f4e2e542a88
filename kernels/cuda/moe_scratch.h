// The intermediate buffers of one MoE block on the GPU, carved out of one caller-provided device
// scratch buffer (the launch paths allocate nothing): routing results, the permutation, the
// permuted activations and the expert projections.
#pragma once

#include <cuda_bf16.h>

#include <cstddef>
#include <cstdint>

#include "absl/status/statusor.h"

namespace flatfleet::cuda {

struct MoeScratchShape {
  int64_t rows = 0;  // tokens
  int64_t top_k = 0;
  int64_t num_experts = 0;
  int64_t hidden = 0;
  int64_t intermediate = 0;
};

// Every array starts 256-byte aligned (what cudaMalloc gives, and more than the 16 bytes the
// grouped GEMM's tensor-core path needs).
struct MoeScratch {
  int32_t* expert_ids = nullptr;           // [rows, top_k]
  float* expert_weights = nullptr;         // [rows, top_k]
  int32_t* expert_offsets = nullptr;       // [num_experts + 1]
  int32_t* permuted_source_row = nullptr;  // [rows * top_k]
  int32_t* inverse_permutation = nullptr;  // [rows * top_k]
  __nv_bfloat16* xp = nullptr;             // [rows * top_k, hidden]
  __nv_bfloat16* gate_up = nullptr;        // [rows * top_k, 2 * intermediate]
  __nv_bfloat16* activated = nullptr;      // [rows * top_k, intermediate]: silu(gate) * up
  __nv_bfloat16* down = nullptr;           // [rows * top_k, hidden]
};

// Bytes of scratch the block needs for `shape` (0 for a shape with a negative or zero field).
size_t MoeScratchBytes(const MoeScratchShape& shape);

// Points the arrays into `scratch` (device memory, 256-byte aligned, `scratch_bytes` long);
// InvalidArgument naming the problem when the shape is bad or the buffer too small.
absl::StatusOr<MoeScratch> CarveMoeScratch(const MoeScratchShape& shape, void* scratch,
                                           size_t scratch_bytes);

}  // namespace flatfleet::cuda
