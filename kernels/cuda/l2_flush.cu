// L2 flush by reading: a grid-stride loop of 16-byte loads cached in L2 only (ld.global.cg), XORed
// together so the compiler cannot drop them.
#include <algorithm>
#include <cstdint>

#include "kernels/cuda/l2_flush_launch.h"

namespace flatfleet::cuda::internal {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 4096;
constexpr uint32_t kImpossible = 0x9e3779b9u;  // the sink is written only if the XOR equals it

__global__ void __launch_bounds__(kThreads)
    L2FlushReadKernel(const uint4* __restrict__ data, int64_t count, uint32_t* sink) {
  uint32_t acc = 0;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(kThreads) + threadIdx.x; i < count;
       i += static_cast<int64_t>(gridDim.x) * kThreads) {
    const uint4 v = __ldcg(data + i);
    acc ^= v.x ^ v.y ^ v.z ^ v.w;
  }
  if (acc == kImpossible) *sink = acc;
}

}  // namespace

cudaError_t LaunchL2FlushRead(const void* buffer, size_t bytes, uint32_t* sink,
                              cudaStream_t stream) {
  const auto count = static_cast<int64_t>(bytes / 16);
  if (count == 0) return cudaSuccess;
  const int64_t blocks = std::min<int64_t>((count + kThreads - 1) / kThreads, kMaxBlocks);
  L2FlushReadKernel<<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(
      static_cast<const uint4*>(buffer), count, sink);
  return cudaGetLastError();
}

}  // namespace flatfleet::cuda::internal
