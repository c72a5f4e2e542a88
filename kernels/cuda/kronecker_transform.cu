// FlatQuant's Kronecker transform of activation rows in double, one block per row (see
// kronecker_transform.h for the numerics).
#include <atomic>

#include "kernels/cuda/activation_device.cuh"
#include "kernels/cuda/kronecker_transform_launch.h"
#include "kernels/cuda/per_device_attribute.h"

namespace flatfleet::cuda::internal {
namespace {

constexpr int kThreads = 256;
constexpr int kMaxSharedBytes = 232448;  // Hopper's per-block opt-in limit (227 KB)
constexpr int kValuesPerThread = kKroneckerValuesPerThread;

// Block (row, part): rows of T and y for a in [part * a_per_block, ...) of one row of x. Each
// thread owns G consecutive values of a at one column, so a load of U (stage 1) or of P2 (stage 2)
// serves G sums; every sum still runs over its terms in ascending order, one __dmul_rn and one
// __dadd_rn each, as the CPU's.
template <typename In>
__global__ void __launch_bounds__(kThreads)
    KroneckerRowsKernel(const In* x, KroneckerRowsParams p) {
  extern __shared__ __align__(16) unsigned char shared[];
  const int n1 = p.n1, n2 = p.n2, n = n1 * n2;
  float* row = reinterpret_cast<float*>(shared);  // [n]: u = x / s, as the n1 x n2 view U
  float* left = row + n;                          // [n1 * n1]: P1
  double* partial = reinterpret_cast<double*>(shared + (static_cast<int64_t>(n + n1 * n1) * 4 + 7) /
                                                           8 * 8);  // [chunk_rows * n2]: rows of T
  const In* x_row = x + blockIdx.x * p.x_stride;
  for (int i = threadIdx.x; i < n; i += kThreads) {
    row[i] = __fdiv_rn(LoadAsFloat(x_row, i), p.divisors[i]);
  }
  for (int i = threadIdx.x; i < n1 * n1; i += kThreads) left[i] = p.p1[i];
  __syncthreads();
  float* y_row = p.y + blockIdx.x * p.y_stride;
  const int a_begin = blockIdx.y * p.a_per_block;
  const int a_end = min(n1, a_begin + p.a_per_block);
  for (int a0 = a_begin; a0 < a_end; a0 += p.chunk_rows) {
    const int rows_here = min(p.chunk_rows, a_end - a0);
    const int items = (rows_here + kValuesPerThread - 1) / kValuesPerThread * n2;
    // T[a][j] = sum_i P1[i][a] U[i][j] for this chunk's a (P1 a broadcast, U's row i coalesced).
    for (int item = threadIdx.x; item < items; item += kThreads) {
      const int first = item / n2 * kValuesPerThread, j = item % n2;
      int a[kValuesPerThread];
      double sum[kValuesPerThread];
#pragma unroll
      for (int g = 0; g < kValuesPerThread; ++g) {
        a[g] = a0 + min(first + g, rows_here - 1);  // past the chunk: a repeat, not stored
        sum[g] = 0.0;
      }
      for (int i = 0; i < n1; ++i) {
        const double u = static_cast<double>(row[i * n2 + j]);
#pragma unroll
        for (int g = 0; g < kValuesPerThread; ++g) {
          sum[g] = __dadd_rn(sum[g], __dmul_rn(static_cast<double>(left[i * n1 + a[g]]), u));
        }
      }
#pragma unroll
      for (int g = 0; g < kValuesPerThread; ++g) {
        if (first + g < rows_here) partial[(first + g) * n2 + j] = sum[g];
      }
    }
    __syncthreads();
    // y[a][b] = sum_j T[a][j] P2[j][b] (T a broadcast, P2's row j coalesced from L2).
    for (int item = threadIdx.x; item < items; item += kThreads) {
      const int first = item / n2 * kValuesPerThread, b = item % n2;
      int t_row[kValuesPerThread];
      double sum[kValuesPerThread];
#pragma unroll
      for (int g = 0; g < kValuesPerThread; ++g) {
        t_row[g] = min(first + g, rows_here - 1) * n2;
        sum[g] = 0.0;
      }
      for (int j = 0; j < n2; ++j) {
        const double right = static_cast<double>(__ldg(p.p2 + j * n2 + b));
#pragma unroll
        for (int g = 0; g < kValuesPerThread; ++g) {
          sum[g] = __dadd_rn(sum[g], __dmul_rn(partial[t_row[g] + j], right));
        }
      }
#pragma unroll
      for (int g = 0; g < kValuesPerThread; ++g) {
        if (first + g < rows_here) y_row[(a0 + first + g) * n2 + b] = __double2float_rn(sum[g]);
      }
    }
    __syncthreads();  // the next chunk overwrites T
  }
}

template <typename In>
cudaError_t Launch(const In* x, const KroneckerRowsParams& p, cudaStream_t stream) {
  static std::atomic<uint64_t> configured_devices{0};
  const auto kernel = KroneckerRowsKernel<In>;
  if (const cudaError_t error =
          SetMaxDynamicSharedMemoryOncePerDevice(configured_devices, kernel, kMaxSharedBytes);
      error != cudaSuccess) {
    return error;
  }
  const auto bytes = static_cast<size_t>(KroneckerRowsSharedBytes(p.n1, p.n2, p.chunk_rows));
  const dim3 grid(static_cast<unsigned>(p.rows),
                  static_cast<unsigned>((p.n1 + p.a_per_block - 1) / p.a_per_block));
  kernel<<<grid, kThreads, bytes, stream>>>(x, p);
  return cudaGetLastError();
}

}  // namespace

cudaError_t LaunchKroneckerRows(const KroneckerRowsParams& p, cudaStream_t stream) {
  if (p.rows == 0) return cudaSuccess;
  return p.x_is_bf16 ? Launch(static_cast<const uint16_t*>(p.x), p, stream)
                     : Launch(static_cast<const float*>(p.x), p, stream);
}

}  // namespace flatfleet::cuda::internal
