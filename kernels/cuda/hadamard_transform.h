// The online randomized Hadamard rotation of activation rows on the GPU, y = x Q, the same rotation
// as the CPU's RandomizedHadamard::ApplyToActivationRows (kernels/cpu/quant/hadamard.h):
//   Q = D (H_p / sqrt(p) (x) B_m),  n = p * m
// computed in double like the CPU, one row per block, the row in shared memory:
//   t_i = x_i * D_i; the fast Walsh-Hadamard butterflies (a + b, a - b) down each of the m
//   columns of the p x m view, stage by stage (each element sees the CPU's sequence of IEEE
//   additions); then y = t * norm (m = 1) or each length-m segment times B_m with the sum taken
//   in ascending order (products and sums each rounded, no FMA) times norm; y rounded to float32.
// For power-of-two n (m = 1) every step is the CPU's own IEEE operation, so y is bit-exact. For
// m > 1 the CPU's compiler may contract some of the segment's multiply-adds into FMAs (x86-64-v3
// vectorises the loop body and fuses its tail), so y may differ from the CPU's by the double
// sums' last bits, i.e. by at most one float32 ulp where the double lands on a float rounding
// boundary (the tests state it). The block B_m (up to 1024 x 1024) is read from global memory.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/cuda/int8_activation_quantizer.h"

namespace flatfleet::cuda {

// The row lives in shared memory as doubles: n * 8 bytes of the 227 KB a Hopper block can opt in
// to. Llama-3-70B's down_proj input (28672) fits; wider rows are refused.
inline constexpr int64_t kHadamardMaxSize = 232448 / 8;

struct DeviceHadamardRows {
  const void* x = nullptr;  // [rows, n] float32 or bfloat16 bits, device
  ActivationType type = ActivationType::kBfloat16;
  int64_t rows = 0;
  int64_t x_stride = 0;           // elements between rows of x; 0 means n
  int64_t power_of_two = 1;       // p (a power of two)
  int64_t block_size = 1;         // m; n = p * m <= kHadamardMaxSize
  const double* signs = nullptr;  // [n] the +-1 diagonal D, device
  const double* block = nullptr;  // [m * m] B_m row-major, device; unused (may be null) when m = 1
  double norm = 1.0;              // 1 / sqrt(p), computed on the host as the CPU does
  float* y = nullptr;             // [rows, y_stride] float32, device
  int64_t y_stride = 0;           // 0 means n
};

// Validates the arguments (InvalidArgument naming the field) and enqueues the kernel on `stream`.
absl::Status ApplyHadamardRows(const DeviceHadamardRows& args, cudaStream_t stream);

}  // namespace flatfleet::cuda
