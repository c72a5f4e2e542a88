// Quantizing a linear layer from calibration statistics: the recipe's DATA-DEPENDENT parts are
// built here, each time the layer is (re)quantized, from the raw-input statistics that
// kCalibrate recorded (activation_calibration.h):
//
//   * SmoothQuant scales (smooth_input_transform.h) from raw channel maxima, optionally with a
//     per-layer alpha search minimising the quantized layer's output error on (up to 128
//     evenly spaced rows of) the raw sample;
//   * FlattenQuant channel splits (flatten_input_transform.h) from raw (or smoothed) maxima;
//   * GPTQ's Hessian X^T X of the transformed inputs (gptq_quantizer.h).
//
// The layer's chain is [smooth][flatten] followed by the recipe's data-independent transforms
// (Hadamard). The transformed channel maxima that static scales and QUIK use are recomputed for
// the full chain: exactly for channel-wise chains (smooth, flatten), otherwise from the raw
// sample (exact while it holds every calibration row).
//
// GPTQ memory while one linear is quantized (in = K inputs): the calibration's Gram (8 K^2 bytes,
// accumulated once, freed with the calibration by QuantizedCpuLinearWeight::ReleaseFloat), plus
// QuantizeGptq's one working buffer (8 K^2); a transformed chain (Hadamard, smoothing) adds the
// transformed Hessian (8 K^2) and, while forming it, two float [K, K] intermediates (8 K^2).
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "common/tensor.h"
#include "quant/activation_calibration.h"
#include "quant/input_transform.h"
#include "quant/quantized_linear.h"
#include "quant/recipes.h"

namespace flatfleet::quant {

// Whether the recipe builds transforms or weights from raw-input calibration statistics.
bool NeedsRawStatistics(const QuantRecipe& recipe);
// What kCalibrate records for the recipe when it records raw statistics at all: the bounded row
// sample, and the Gram matrix (in^2 doubles per layer) only for GPTQ. Layer-by-layer calibration
// (sequential_quantizer.h) holds one decoder layer's statistics at a time.
CalibrationOptions CalibrationOptionsFor(const QuantRecipe& recipe);

// The candidates of SmoothQuant's per-layer alpha search.
std::vector<double> SmoothAlphaCandidates(double configured_alpha);

// Quantizes `weight` [out, in] for `recipe`. `base` is the recipe's data-independent chain
// (OnlineTransformsFor). `calibration` may be null: recipes that need it then fail with
// FailedPrecondition (like per-tensor static scales do).
absl::StatusOr<QuantizedLinear> QuantizeDataDependentLinear(
    const Tensor& weight, const Tensor* bias, const QuantRecipe& recipe,
    const ActivationCalibration* calibration, const InputTransformChain& base);

// The pieces, for tests and tools.
struct DataDependentInputs {
  InputTransformChain transforms;     // data-dependent transforms, then `base`
  ActivationCalibration transformed;  // channel_absmax and rows_seen of the transformed inputs
  std::vector<double> hessian;        // [K, K] X^T X of the transformed inputs (GPTQ only)
  // Instead of `hessian`, when the chain leaves the inputs as they are: the calibration's own
  // Gram (not copied; valid while that calibration lives).
  const std::vector<double>* raw_hessian = nullptr;
  // What GPTQ uses: raw_hessian, else hessian, else null (not GPTQ).
  const std::vector<double>* gptq_hessian() const {
    if (raw_hessian != nullptr) return raw_hessian;
    return hessian.empty() ? nullptr : &hessian;
  }
};
// With a fixed SmoothQuant alpha (the search calls it per candidate).
absl::StatusOr<DataDependentInputs> BuildDataDependentInputs(
    const Tensor& weight, const QuantRecipe& recipe, const ActivationCalibration& calibration,
    const InputTransformChain& base, double smooth_alpha);

// sum of squared differences between the float layer x W^T (+ b) and `layer` on `rows`
// [m, in]: the alpha search's objective.
absl::StatusOr<double> LayerOutputError(const QuantizedLinear& layer, const Tensor& weight,
                                        std::span<const float> rows, int64_t m);

}  // namespace flatfleet::quant
