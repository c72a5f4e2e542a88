// Embedding gather: one block per output row, 16-byte loads and stores where the row allows.
#include <cstdint>

#include "kernels/cuda/activation_device.cuh"
#include "kernels/cuda/embedding_launch.h"

namespace flatfleet::cuda::internal {
namespace {

constexpr int kThreads = 256;

// Eight bfloat16 (16 bytes) -> eight floats; widening bfloat16 is exact.
__device__ __forceinline__ void WidenBf16x8(const uint4 packed, float4& low, float4& high) {
  const uint32_t words[4] = {packed.x, packed.y, packed.z, packed.w};
  float v[8];
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    v[2 * i] = __uint_as_float(words[i] << 16);
    v[2 * i + 1] = __uint_as_float(words[i] & 0xffff0000u);
  }
  low = make_float4(v[0], v[1], v[2], v[3]);
  high = make_float4(v[4], v[5], v[6], v[7]);
}

// bfloat16 table, hidden % 8 == 0 and 16-byte aligned table and output: 8 values per thread step.
__global__ void __launch_bounds__(kThreads)
    EmbeddingBf16Vec8Kernel(const uint4* __restrict__ table, int64_t table_rows, int64_t hidden8,
                            const int32_t* __restrict__ ids, float4* __restrict__ out) {
  const int64_t row = blockIdx.x;
  const int64_t id = ids[row];
  float4* out_row = out + row * hidden8 * 2;
  if (id < 0 || id >= table_rows) {
    const float4 zero = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    for (int64_t i = threadIdx.x; i < hidden8 * 2; i += kThreads) out_row[i] = zero;
    return;
  }
  const uint4* table_row = table + id * hidden8;
  for (int64_t i = threadIdx.x; i < hidden8; i += kThreads) {
    float4 low, high;
    WidenBf16x8(table_row[i], low, high);
    out_row[2 * i] = low;
    out_row[2 * i + 1] = high;
  }
}

// float32 table, hidden % 4 == 0 and 16-byte aligned: a plain 16-byte copy.
__global__ void __launch_bounds__(kThreads)
    EmbeddingF32Vec4Kernel(const float4* __restrict__ table, int64_t table_rows, int64_t hidden4,
                           const int32_t* __restrict__ ids, float4* __restrict__ out) {
  const int64_t row = blockIdx.x;
  const int64_t id = ids[row];
  float4* out_row = out + row * hidden4;
  const bool in_range = id >= 0 && id < table_rows;
  const float4* table_row = table + (in_range ? id : 0) * hidden4;
  for (int64_t i = threadIdx.x; i < hidden4; i += kThreads) {
    out_row[i] = in_range ? table_row[i] : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
  }
}

// Any hidden size and alignment: one element per thread step (LoadAsFloat: activation_device.cuh).
template <typename T>
__global__ void __launch_bounds__(kThreads)
    EmbeddingScalarKernel(const T* __restrict__ table, int64_t table_rows, int64_t hidden,
                          const int32_t* __restrict__ ids, float* __restrict__ out) {
  const int64_t row = blockIdx.x;
  const int64_t id = ids[row];
  float* out_row = out + row * hidden;
  const bool in_range = id >= 0 && id < table_rows;
  const T* table_row = table + (in_range ? id : 0) * hidden;
  for (int64_t i = threadIdx.x; i < hidden; i += kThreads) {
    out_row[i] = in_range ? LoadAsFloat(table_row, i) : 0.0f;
  }
}

bool Aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

}  // namespace

cudaError_t LaunchEmbedding(const EmbeddingParams& p, cudaStream_t stream) {
  if (p.rows <= 0 || p.hidden <= 0) return cudaSuccess;
  const auto blocks = static_cast<unsigned>(p.rows);
  const bool aligned = Aligned16(p.table) && Aligned16(p.out);
  if (p.table_is_bf16) {
    if (aligned && p.hidden % 8 == 0) {
      EmbeddingBf16Vec8Kernel<<<blocks, kThreads, 0, stream>>>(static_cast<const uint4*>(p.table),
                                                               p.table_rows, p.hidden / 8, p.ids,
                                                               reinterpret_cast<float4*>(p.out));
    } else {
      EmbeddingScalarKernel<<<blocks, kThreads, 0, stream>>>(static_cast<const uint16_t*>(p.table),
                                                             p.table_rows, p.hidden, p.ids, p.out);
    }
  } else {
    if (aligned && p.hidden % 4 == 0) {
      EmbeddingF32Vec4Kernel<<<blocks, kThreads, 0, stream>>>(static_cast<const float4*>(p.table),
                                                              p.table_rows, p.hidden / 4, p.ids,
                                                              reinterpret_cast<float4*>(p.out));
    } else {
      EmbeddingScalarKernel<<<blocks, kThreads, 0, stream>>>(static_cast<const float*>(p.table),
                                                             p.table_rows, p.hidden, p.ids, p.out);
    }
  }
  return cudaGetLastError();
}

}  // namespace flatfleet::cuda::internal
