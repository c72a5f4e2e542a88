// Builds one layer's QuantizedLinear for a recipe, including the steps that need the layer's
// calibration inputs (ActivationCalibration::raw_samples):
//
//   * FlatQuant (TransformKind::kKronecker): trains the layer's FlatQuantInputTransform on the raw
//     calibration rows (flat_quant_trainer.h) and quantizes with it and its learned clip ratios;
//     without calibration rows this is a FailedPrecondition (the backend quantizes after
//     calibration);
//   * ABQ output correction (QuantRecipe::output_correction): after quantizing, fits per output
//     channel j an affine map f_j ~ a_j q_j + c_j from the quantized GEMM output q to the float
//     output f on the calibration rows (least squares, a_j shrunk towards 1 and clamped to
//     [0.5, 2]) and folds it into the layer (QuantizedLinear::ApplyOutputCorrection). Skipped when
//     there are fewer than kMinCorrectionRows rows.
// Otherwise it is QuantizedLinear::Create.
#pragma once

#include <cstdint>

#include "absl/status/statusor.h"
#include "common/tensor.h"
#include "quant/activation_calibration.h"
#include "quant/flat_quant_trainer.h"
#include "quant/input_transform.h"
#include "quant/quantized_linear.h"
#include "quant/recipes.h"

namespace flatfleet::quant {

inline constexpr int64_t kMinCorrectionRows = 16;

// Whether the recipe uses ActivationCalibration::raw_samples (FlatQuant, output correction).
bool NeedsRawCalibration(const QuantRecipe& recipe);

// The FlatQuant training settings recipes use (few steps: fixture tests stay in seconds).
FlatQuantOptions RecipeFlatQuantOptions(const QuantRecipe& recipe);

// `online_transforms`: the recipe's data-independent transforms (OnlineTransformsFor); unused for
// kKronecker. `calibration` may be null. `consumable_gram`: calibration->raw_gram when the caller
// no longer needs it (GPTQ then factors it in place: QuantizeDataDependentLinear).
// `consumable_weight`: `weight` when the caller no longer needs it either (its values may move
// into the layer; not with FlatQuant or output correction, which read it again).
absl::StatusOr<QuantizedLinear> BuildCalibratedLinear(
    const Tensor& weight, const Tensor* bias, const QuantRecipe& recipe,
    const ActivationCalibration* calibration, InputTransformChain online_transforms,
    std::vector<double>* consumable_gram = nullptr, Tensor* consumable_weight = nullptr);

struct OutputCorrection {
  std::vector<float> scale;  // a_j
  std::vector<float> shift;  // c_j
};

// Fits f[:, j] ~ a_j q[:, j] + c_j ([rows, cols] each): a_j = (cov(f, q) + lambda var(q)) /
// ((1 + lambda) var(q)) (ridge towards 1, lambda = `shrinkage`), clamped to [0.5, 2], c_j =
// mean(f) - a_j mean(q). Errors on shape mismatch or fewer than 2 rows.
absl::StatusOr<OutputCorrection> FitOutputCorrection(std::span<const float> quantized,
                                                     std::span<const float> reference, int64_t rows,
                                                     int64_t cols, double shrinkage = 0.25);

}  // namespace flatfleet::quant
