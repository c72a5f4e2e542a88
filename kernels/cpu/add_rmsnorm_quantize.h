// The reference of the fused residual add + RMSNorm + per-token INT8 quantisation
// (kernels/cuda/add_rmsnorm_quantize.h), composed of the reference ops the unfused GPU sequence
// matches: AddInPlace, RmsNormRows (pointwise.h), one round-to-nearest-even to bfloat16 (the
// bf16 activation the GPU's norm writes and its quantizer reads), then QuantizeRtn's symmetric
// 8-bit per-token format with the clip ratio (kernels/cpu/quant/rtn_quantizer.h), which the GPU
// activation quantizer reproduces bit for bit.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/cpu/quant/quantized_matrix.h"

namespace flatfleet::kernels::cpu {

struct AddRmsNormQuantizeResult {
  std::vector<float> normed;     // [rows, hidden]: the bf16 values y, as floats (exact)
  quant::QuantizedMatrix codes;  // [rows, hidden] INT8 codes and FP16 per-row scales of y
};

// residual ([rows, hidden]) += delta (when not empty; the bf16 values as floats), then
// y = bf16(RmsNormRows(residual)), then y quantized per row. Errors as QuantizeRtn (a non-finite
// y, a scale beyond FP16).
absl::StatusOr<AddRmsNormQuantizeResult> AddRmsNormQuantizeInt8(std::span<float> residual,
                                                                std::span<const float> delta,
                                                                int64_t rows, int64_t hidden,
                                                                std::span<const float> weight,
                                                                float eps, float clip_ratio);

// The nearest bfloat16 (ties to even, common/dtype.h's FloatToBF16) as a float; NaN stays NaN.
float RoundToBf16(float value);

}  // namespace flatfleet::kernels::cpu
