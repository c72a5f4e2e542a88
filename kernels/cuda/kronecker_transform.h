// FlatQuant's online transform of activation rows on the GPU, y = (x diag(s)^-1) (P1 (x) P2), the
// CPU's FlatQuantInputTransform::ApplyToActivations (quant/flat_quant_input_transform.h) with the
// same operations (kernels/cpu/quant/kronecker_transform.h):
//   u_i = x_i / s_i                                       one IEEE float32 division
//   T[a][j] = sum_i P1[i][a] * U[i][j]                    U the n1 x n2 view of u; double,
//   y[a * n2 + b] = float(sum_j T[a][j] * P2[j][b])       each product and sum rounded, ascending
// P1, P2 and s are the stored float32 values (the CPU widens the same floats to double), so every
// step is the CPU's own IEEE operation and y is bit-exact with it: the CPU file is compiled without
// FMA contraction for that reason. A block takes one row and a range of a (all of it once the
// rows fill the GPU; split over several blocks at decode); the divided row and P1 sit in shared
// memory as floats, T in chunks of rows of doubles, P2 is read from global memory (L2); a thread
// sums 4 values of a at one column, so one load serves 4 sums. Exact but not fast: n (n1 + n2)
// double multiplies and as many adds per row, without FMA (bench/RESULTS.md has its time beside
// the GEMM it precedes).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/cuda/int8_activation_quantizer.h"

namespace flatfleet::cuda {

struct DeviceKroneckerRows {
  const void* x = nullptr;  // [rows, n] float32 or bfloat16 bits, device; n = n1 * n2
  ActivationType type = ActivationType::kBfloat16;
  int64_t rows = 0;
  int64_t x_stride = 0;             // elements between rows of x; 0 means n
  int64_t n1 = 0;                   // left factor's order
  int64_t n2 = 0;                   // right factor's order
  const float* divisors = nullptr;  // [n] FlatQuant's smoothing s (positive), device
  const float* p1 = nullptr;        // [n1 * n1] row-major, device
  const float* p2 = nullptr;        // [n2 * n2] row-major, device
  float* y = nullptr;               // [rows, y_stride] float32, device
  int64_t y_stride = 0;             // 0 means n
};

// Shared memory the kernel needs for one row of a factorisation (n1, n2): the divided row and P1
// as floats plus at least one row of T as doubles. Above kKroneckerMaxSharedBytes it is refused.
inline constexpr int64_t kKroneckerMaxSharedBytes = 232448;  // Hopper's per-block opt-in (227 KB)
int64_t KroneckerRowsMinSharedBytes(int64_t n1, int64_t n2);

// Validates the arguments (InvalidArgument naming the field) and enqueues the kernel on `stream`.
absl::Status ApplyKroneckerRows(const DeviceKroneckerRows& args, cudaStream_t stream);

}  // namespace flatfleet::cuda
