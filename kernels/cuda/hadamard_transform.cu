// The randomized Hadamard rotation of activation rows in double, one block per row (see
// hadamard_transform.h for the numerics).
#include <atomic>

#include "kernels/cuda/activation_device.cuh"
#include "kernels/cuda/hadamard_transform_launch.h"
#include "kernels/cuda/per_device_attribute.h"

namespace flatfleet::cuda::internal {
namespace {

constexpr int kThreads = 256;
constexpr int kMaxSharedBytes = 232448;  // Hopper's per-block opt-in limit (227 KB)

template <typename In>
__global__ void __launch_bounds__(kThreads) HadamardRowsKernel(const In* x, HadamardRowsParams p) {
  extern __shared__ double row[];
  const int64_t m = p.block_size;
  const int64_t n = p.power_of_two * m;
  const In* x_row = x + blockIdx.x * p.x_stride;
  for (int64_t i = threadIdx.x; i < n; i += kThreads) {
    row[i] = __dmul_rn(static_cast<double>(LoadAsFloat(x_row, i)), p.signs[i]);
  }
  __syncthreads();
  // Butterfly stage `half` pairs element (i, j) with (i + half, j) of the p x m view for every i
  // whose bit `half` is clear: (p / 2) * m independent pairs, the CPU's a + b and a - b.
  const int64_t pairs = p.power_of_two / 2 * m;
  for (int64_t half = 1; half < p.power_of_two; half *= 2) {
    for (int64_t t = threadIdx.x; t < pairs; t += kThreads) {
      const int64_t j = t % m;
      const int64_t u = t / m;
      const int64_t i = u / half * 2 * half + u % half;
      const double a = row[i * m + j];
      const double b = row[(i + half) * m + j];
      row[i * m + j] = __dadd_rn(a, b);
      row[(i + half) * m + j] = __dsub_rn(a, b);
    }
    __syncthreads();
  }
  float* y_row = p.y + blockIdx.x * p.y_stride;
  if (m == 1) {
    for (int64_t i = threadIdx.x; i < n; i += kThreads) {
      y_row[i] = __double2float_rn(__dmul_rn(row[i], p.norm));
    }
    return;
  }
  // y[i * m + c] = norm * sum_r t[i * m + r] * B[r][c], ascending r (the row stays unmodified in
  // shared memory: the output goes straight to y).
  for (int64_t e = threadIdx.x; e < n; e += kThreads) {
    const int64_t c = e % m;
    const double* segment = row + (e - c);
    double sum = 0.0;
    for (int64_t r = 0; r < m; ++r) sum = __dadd_rn(sum, __dmul_rn(segment[r], p.block[r * m + c]));
    y_row[e] = __double2float_rn(__dmul_rn(sum, p.norm));
  }
}

template <typename In>
cudaError_t Launch(const In* x, const HadamardRowsParams& p, cudaStream_t stream) {
  static std::atomic<uint64_t> configured_devices{0};
  const auto kernel = HadamardRowsKernel<In>;
  if (const cudaError_t error =
          SetMaxDynamicSharedMemoryOncePerDevice(configured_devices, kernel, kMaxSharedBytes);
      error != cudaSuccess) {
    return error;
  }
  const auto bytes = static_cast<size_t>(p.power_of_two * p.block_size) * sizeof(double);
  kernel<<<static_cast<unsigned>(p.rows), kThreads, bytes, stream>>>(x, p);
  return cudaGetLastError();
}

}  // namespace

cudaError_t LaunchHadamardRows(const HadamardRowsParams& p, cudaStream_t stream) {
  if (p.rows == 0) return cudaSuccess;
  return p.x_is_bf16 ? Launch(static_cast<const uint16_t*>(p.x), p, stream)
                     : Launch(static_cast<const float*>(p.x), p, stream);
}

}  // namespace flatfleet::cuda::internal
