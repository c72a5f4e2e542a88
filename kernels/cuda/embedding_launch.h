// Raw launcher of the embedding gather (embedding.cu). It checks nothing: callers go through
// EmbeddingLookup (embedding.h), which validates shapes and pointers first.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace flatfleet::cuda::internal {

struct EmbeddingParams {
  const void* table = nullptr;  // [table_rows, hidden] bfloat16 bits or float32
  bool table_is_bf16 = true;
  int64_t table_rows = 0;
  int64_t hidden = 0;
  const int32_t* ids = nullptr;  // [rows]
  int64_t rows = 0;
  float* out = nullptr;  // [rows, hidden]
};
cudaError_t LaunchEmbedding(const EmbeddingParams& params, cudaStream_t stream);

}  // namespace flatfleet::cuda::internal
