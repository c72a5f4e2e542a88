// Raw launcher of FlatQuant's Kronecker transform kernel (kronecker_transform.h validates its
// arguments and chooses the chunk).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace flatfleet::cuda::internal {

// Values of a each thread sums at once (one load of U or P2 serves them all).
inline constexpr int kKroneckerValuesPerThread = 4;

struct KroneckerRowsParams {
  const void* x = nullptr;
  bool x_is_bf16 = true;
  int64_t rows = 0;
  int64_t x_stride = 0;
  int n1 = 0;
  int n2 = 0;
  int a_per_block = 1;  // values of a one block computes (the grid's y covers n1 with them)
  int chunk_rows = 1;   // rows of T (values of a) held in shared memory at once, a multiple of
                        // kKroneckerValuesPerThread unless it is the whole of a_per_block
  const float* divisors = nullptr;
  const float* p1 = nullptr;
  const float* p2 = nullptr;
  float* y = nullptr;
  int64_t y_stride = 0;
};

// Dynamic shared memory of one block for (n1, n2, chunk_rows): the divided row and P1 as floats,
// then (8-byte aligned) chunk_rows rows of T as doubles.
inline int64_t KroneckerRowsSharedBytes(int64_t n1, int64_t n2, int64_t chunk_rows) {
  const int64_t floats = (n1 * n2 + n1 * n1) * 4;
  return (floats + 7) / 8 * 8 + chunk_rows * n2 * 8;
}

cudaError_t LaunchKroneckerRows(const KroneckerRowsParams& params, cudaStream_t stream);

}  // namespace flatfleet::cuda::internal
