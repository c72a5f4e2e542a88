// Row-broadcast bias addition on the GPU: y[r, c] = round(x[r, c] + bias[c]), one float32 addition
// and one rounding to the output type (none for float32). The follow-up of a GEMM whose bias
// cuBLASLt's epilogue cannot add exactly (see bf16_gemm.h): the GEMM writes its float32 result,
// this adds the bias and rounds once, as the epilogue would.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/cuda/gemm_element_type.h"

namespace flatfleet::cuda {

struct DeviceBiasAdd {
  int64_t rows = 0, cols = 0;  // >= 0 each (0: nothing to do)
  const float* x = nullptr;    // [rows, cols], rows x_stride elements apart, device memory
  int64_t x_stride = 0;        // 0 means cols
  const void* bias = nullptr;  // [cols], of bias_type (bf16 widens exactly)
  GemmElementType bias_type = GemmElementType::kBf16;
  // [rows, cols], rows y_stride elements apart. Either x itself (float32, same stride: in place,
  // every element is read and written by one thread) or not overlapping x.
  void* y = nullptr;
  int64_t y_stride = 0;  // 0 means cols
  GemmElementType y_type = GemmElementType::kBf16;
};

// Validates the arguments (InvalidArgument naming the field) and enqueues on `stream`; any
// alignment; no host synchronisation (graph-capturable).
absl::Status AddBias(const DeviceBiasAdd& args, cudaStream_t stream);

}  // namespace flatfleet::cuda
