// Raw launchers of the elementwise kernels (activation_ops.cu). They check nothing: callers go
// through the validating wrappers in activation_ops.h. Strides are resolved (never 0) here.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace flatfleet::cuda::internal {

enum class ElementwiseOp { kSiluMul, kCastBf16ToF32, kCastF32ToBf16, kAddBf16ToF32 };

// One row-wise elementwise op over [rows, cols]:
//   kSiluMul:       out(bf16)[r, i] = silu(in(bf16)[r, i]) * in[r, cols + i]
//   kCastBf16ToF32: out(f32) = in(bf16)
//   kCastF32ToBf16: out(bf16) = in(f32)
//   kAddBf16ToF32:  out(f32) += in(bf16)
struct ElementwiseParams {
  ElementwiseOp op = ElementwiseOp::kSiluMul;
  const void* in = nullptr;
  int64_t in_row_stride = 0;
  void* out = nullptr;
  int64_t out_row_stride = 0;
  int64_t rows = 0;
  int64_t cols = 0;
  bool force_scalar = false;  // tests: the reference kernel even where the vector one applies
};
cudaError_t LaunchElementwise(const ElementwiseParams& params, cudaStream_t stream);

}  // namespace flatfleet::cuda::internal
