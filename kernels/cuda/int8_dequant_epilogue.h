// The float epilogue of a per-channel INT8 GEMM whose exact int32 sums were computed elsewhere
// (cuBLASLt's IMMA kernels, int8_cublaslt_gemm.h): y[r, j] = out(float(acc[r, j]) * w_scale[j] *
// x_scale[r] + add[j]), each operation rounded in that order, as the CPU reference does
// (quant::QuantizedGemm with one group, then QuantizedLinear::Forward's bias), so the result is
// bit-exact with it. `out` rounds once to bf16 (nearest even) or keeps float32.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/cuda/gemm_element_type.h"

namespace flatfleet::cuda {

struct DeviceInt8DequantEpilogue {
  int64_t rows = 0, cols = 0;
  const int32_t* sums = nullptr;       // [rows, cols], dense
  const uint16_t* x_scales = nullptr;  // [rows], FP16 bits
  const uint16_t* w_scales = nullptr;  // [cols], FP16 bits
  const float* add = nullptr;          // [cols] or null
  void* y = nullptr;                   // [rows, cols], rows y_stride elements apart
  int64_t y_stride = 0;                // 0 means cols
  GemmElementType y_type = GemmElementType::kBf16;
};

// Validates (InvalidArgument naming the field) and enqueues on `stream`; graph-capturable.
absl::Status Int8DequantEpilogue(const DeviceInt8DequantEpilogue& args, cudaStream_t stream);

}  // namespace flatfleet::cuda
