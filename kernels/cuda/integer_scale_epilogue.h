// Integer Scale's epilogue (arXiv 2405.14597) on the GPU, bit-exact with the CPU reference
// IntegerScaleGemm (kernels/cpu/quant/integer_scale.h) followed by the layer's float add:
//   acc[m, n] = sum_g acc_g[m, n, g] * mult[n, g]          (int32, exact: no overflow by the
//                                                           multipliers' construction)
//   y[m, n]   = ((float(acc) * s_x[m]) * s_min[n]) * 2^-a (+ add[n])
// in float32 in this order (each product rounded once; * 2^-a is the CPU's ldexp), then rounded
// once to the output type. The group sums acc_g come from GemmW4A8's group_accumulators
// (int8_gemm.h), the exact integer partial sums of the float-scale GEMM.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/cuda/gemm_element_type.h"

namespace flatfleet::cuda {

struct DeviceIntegerScaleEpilogue {
  int64_t rows = 0, cols = 0, groups = 0;
  const int32_t* group_sums = nullptr;    // [rows, cols, groups]
  const int32_t* multipliers = nullptr;   // [cols, groups], >= 1
  const uint16_t* x_scales = nullptr;     // [rows] FP16 bits
  const uint16_t* base_scales = nullptr;  // [cols] FP16 bits (s_min)
  int amplifier_bits = 0;                 // a, 0..30
  const float* add = nullptr;             // [cols] or null
  void* y = nullptr;                      // [rows, y_stride] of y_type
  int64_t y_stride = 0;                   // 0 means cols
  GemmElementType y_type = GemmElementType::kFloat32;
};

// Validates the arguments (InvalidArgument naming the field) and enqueues the kernel on `stream`.
absl::Status IntegerScaleEpilogue(const DeviceIntegerScaleEpilogue& args, cudaStream_t stream);

}  // namespace flatfleet::cuda
