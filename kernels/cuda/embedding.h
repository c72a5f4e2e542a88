// Embedding lookup on the GPU: out[r] = float(table[ids[r]]), the first op of every forward pass.
// An id outside [0, table_rows) writes a zero row: a tensor-parallel rank holds one slice of the
// vocabulary and contributes zeros for the ids of the other slices (the all-reduce adds them up).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "absl/status/status.h"

namespace flatfleet::cuda {

enum class EmbeddingTableType { kBfloat16, kFloat32 };

struct DeviceEmbeddingLookup {
  // [table_rows, hidden], row-major, device memory: bfloat16 (the engine's weights) or float32
  // (float models kept at full precision for accuracy tests).
  const void* table = nullptr;
  EmbeddingTableType table_dtype = EmbeddingTableType::kBfloat16;
  int64_t table_rows = 0;
  int64_t hidden = 0;
  const int32_t* ids = nullptr;  // [rows], device memory
  int64_t rows = 0;
  float* out = nullptr;  // [rows, hidden] float32 (the residual stream)
};

// Validates the arguments (InvalidArgument naming the field) and enqueues the gather on `stream`.
// rows == 0 is a no-op.
absl::Status EmbeddingLookup(const DeviceEmbeddingLookup& args, cudaStream_t stream);

}  // namespace flatfleet::cuda
