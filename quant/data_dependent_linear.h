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
// GPTQ memory while one linear is quantized (in = K inputs), besides the calibration's Gram (8 K^2
// bytes, accumulated once): when the caller hands the Gram over (`consumable_gram`: the layer is
// quantized for the last time, QuantizedCpuLinearWeight::ReleaseFloat) and no transform changes
// the inputs, nothing: GPTQ factors the Gram itself. Otherwise GPTQ's copy (8 K^2). A transformed
// chain (Hadamard, smoothing) forms the transformed Hessian (8 K^2, then factored in place) through
// two float [K, K] intermediates (8 K^2 at once); with a consumable Gram the Gram is freed once the
// first of them exists, so that step peaks at 12 K^2 bytes (else 20 K^2 with the Gram).
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
// `consumable_gram`, when not null, is calibration->raw_gram, which the caller no longer needs:
// GPTQ uses it as its working buffer (it is left empty or unspecified). `consumable_weight`, when
// not null, is `weight`, likewise no longer needed (QuantizedLinear::Create may take its values).
absl::StatusOr<QuantizedLinear> QuantizeDataDependentLinear(
    const Tensor& weight, const Tensor* bias, const QuantRecipe& recipe,
    const ActivationCalibration* calibration, const InputTransformChain& base,
    std::vector<double>* consumable_gram = nullptr, Tensor* consumable_weight = nullptr);

// The pieces, for tests and tools.
struct DataDependentInputs {
  InputTransformChain transforms;     // data-dependent transforms, then `base`
  ActivationCalibration transformed;  // channel_absmax and rows_seen of the transformed inputs
  // [K, K] X^T X of the transformed inputs (GPTQ only), owned: GPTQ factors it in place.
  std::vector<double> hessian;
  // Instead of `hessian`, when the chain leaves the inputs as they are and the Gram is not
  // consumable: the calibration's own Gram (not copied; valid while that calibration lives).
  const std::vector<double>* raw_hessian = nullptr;
  // What GPTQ uses: raw_hessian (read), else hessian (consumed), else nothing (not GPTQ).
  GptqHessian gptq_hessian() {
    if (raw_hessian != nullptr) return GptqHessian(raw_hessian);
    return hessian.empty() ? GptqHessian() : GptqHessian::Consume(hessian);
  }
};
// With a fixed SmoothQuant alpha (the search calls it per candidate). `consumable_gram` as for
// QuantizeDataDependentLinear: moved into `hessian`, or freed while the transformed one is formed.
absl::StatusOr<DataDependentInputs> BuildDataDependentInputs(
    const Tensor& weight, const QuantRecipe& recipe, const ActivationCalibration& calibration,
    const InputTransformChain& base, double smooth_alpha,
    std::vector<double>* consumable_gram = nullptr);

// sum of squared differences between the float layer x W^T (+ b) and `layer` on `rows`
// [m, in]: the alpha search's objective.
absl::StatusOr<double> LayerOutputError(const QuantizedLinear& layer, const Tensor& weight,
                                        std::span<const float> rows, int64_t m);

}  // namespace flatfleet::quant
