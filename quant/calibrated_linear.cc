#include "quant/calibrated_linear.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "quant/data_dependent_linear.h"
#include "quant/flat_quant_input_transform.h"
#include "quant/phase_timer.h"

namespace flatfleet::quant {
namespace {

absl::StatusOr<QuantizedLinear> BuildFlatQuantLinear(const Tensor& weight, const Tensor* bias,
                                                     const QuantRecipe& recipe,
                                                     const ActivationCalibration* calibration) {
  const int64_t out = weight.dim(0), in = weight.dim(1);
  const int64_t rows = calibration == nullptr ? 0 : calibration->raw_sample_rows(in);
  if (rows == 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        recipe.name, ": the FlatQuant transform of a [", out, ", ", in,
        "] layer is trained on calibration inputs; calibrate first (LinearMode::kCalibrate)"));
  }
  if (calibration->raw_samples.size() % in != 0) {
    return absl::InvalidArgumentError("calibration raw_samples do not match the layer's inputs");
  }
  FlatQuantProblem problem;
  problem.inputs = calibration->raw_samples;
  problem.rows = rows;
  problem.weight = weight.span();
  problem.out_features = out;
  problem.in_features = in;
  problem.activation_bits = recipe.spec.activation.bits;
  problem.weight_bits = recipe.spec.weight.bits;
  problem.weight_group_size = EffectiveGroupSize(recipe.spec.weight.group_size, in);
  absl::StatusOr<FlatQuantResult> training;
  {
    const ScopedPhase phase(QuantizePhase::kFlatQuantTraining);
    training = TrainFlatQuant(problem, RecipeFlatQuantOptions(recipe));
  }
  FF_ASSIGN_OR_RETURN(FlatQuantResult trained, std::move(training));
  FF_ASSIGN_OR_RETURN(std::shared_ptr<const FlatQuantInputTransform> transform,
                      FlatQuantInputTransform::FromParams(trained.params));
  QuantRecipe effective = recipe;
  effective.spec.activation.clip_ratio = transform->activation_clip_ratio();
  effective.spec.weight.clip_ratio = transform->weight_clip_ratio();
  FF_ASSIGN_OR_RETURN(InputTransformChain chain, InputTransformChain::Create({transform}));
  // The recorded channel statistics describe the raw inputs, not the transformed ones.
  return QuantizedLinear::Create(weight, bias, effective, /*calibration=*/nullptr,
                                 std::move(chain));
}

absl::Status CorrectOutputs(const Tensor& weight, const Tensor* bias,
                            const ActivationCalibration& calibration, QuantizedLinear& layer) {
  const int64_t out = weight.dim(0), in = weight.dim(1);
  const int64_t rows = calibration.raw_sample_rows(in);
  if (rows < kMinCorrectionRows) return absl::OkStatus();
  const std::span<const float> x(calibration.raw_samples.data(), rows * in);
  std::vector<float> quantized(rows * out), reference(rows * out);
  FF_RETURN_IF_ERROR(layer.Forward(x, rows, quantized));
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t j = 0; j < out; ++j) {
      double sum = 0.0;
      for (int64_t k = 0; k < in; ++k) sum += double{x[r * in + k]} * weight.span()[j * in + k];
      reference[r * out + j] = static_cast<float>(sum);
      // Fit on the GEMM outputs: the bias is exact in both.
      if (bias != nullptr) quantized[r * out + j] -= bias->span()[j];
    }
  }
  FF_ASSIGN_OR_RETURN(OutputCorrection correction,
                      FitOutputCorrection(quantized, reference, rows, out));
  return layer.ApplyOutputCorrection(correction.scale, correction.shift);
}

}  // namespace

bool NeedsRawCalibration(const QuantRecipe& recipe) {
  return recipe.spec.transform.kind == TransformKind::kKronecker || recipe.output_correction;
}

FlatQuantOptions RecipeFlatQuantOptions(const QuantRecipe& recipe) {
  FlatQuantOptions options;
  options.seed = recipe.spec.transform.seed;
  return options;
}

absl::StatusOr<QuantizedLinear> BuildCalibratedLinear(const Tensor& weight, const Tensor* bias,
                                                      const QuantRecipe& recipe,
                                                      const ActivationCalibration* calibration,
                                                      InputTransformChain online_transforms,
                                                      std::vector<double>* consumable_gram,
                                                      Tensor* consumable_weight) {
  if (weight.rank() != 2) return absl::InvalidArgumentError("weight must be [out, in]");
  if (calibration != nullptr && calibration->empty() && calibration->raw_samples.empty()) {
    calibration = nullptr;
  }
  if (calibration == nullptr) consumable_gram = nullptr;
  if (recipe.output_correction && calibration != nullptr) consumable_weight = nullptr;  // reread
  absl::StatusOr<QuantizedLinear> layer =
      recipe.spec.transform.kind == TransformKind::kKronecker
          ? BuildFlatQuantLinear(weight, bias, recipe, calibration)
          : QuantizeDataDependentLinear(weight, bias, recipe, calibration, online_transforms,
                                        consumable_gram, consumable_weight);
  if (!layer.ok() || !recipe.output_correction || calibration == nullptr) return layer;
  FF_RETURN_IF_ERROR(CorrectOutputs(weight, bias, *calibration, *layer));
  return layer;
}

absl::StatusOr<OutputCorrection> FitOutputCorrection(std::span<const float> quantized,
                                                     std::span<const float> reference, int64_t rows,
                                                     int64_t cols, double shrinkage) {
  if (rows < 2 || cols < 1 || static_cast<int64_t>(quantized.size()) != rows * cols ||
      reference.size() != quantized.size() || !(shrinkage >= 0.0)) {
    return absl::InvalidArgumentError(absl::StrCat("output correction: ", quantized.size(), " and ",
                                                   reference.size(), " values for [", rows, ", ",
                                                   cols, "]"));
  }
  OutputCorrection correction;
  correction.scale.resize(cols);
  correction.shift.resize(cols);
  for (int64_t j = 0; j < cols; ++j) {
    double mean_q = 0.0, mean_f = 0.0;
    for (int64_t r = 0; r < rows; ++r) {
      mean_q += quantized[r * cols + j];
      mean_f += reference[r * cols + j];
    }
    mean_q /= rows;
    mean_f /= rows;
    double var_q = 0.0, cov = 0.0;
    for (int64_t r = 0; r < rows; ++r) {
      const double dq = quantized[r * cols + j] - mean_q;
      var_q += dq * dq;
      cov += dq * (reference[r * cols + j] - mean_f);
    }
    double a = 1.0;
    if (var_q > 0.0) a = (cov + shrinkage * var_q) / ((1.0 + shrinkage) * var_q);
    a = std::clamp(a, 0.5, 2.0);
    correction.scale[j] = static_cast<float>(a);
    correction.shift[j] = static_cast<float>(mean_f - a * mean_q);
  }
  return correction;
}

}  // namespace flatfleet::quant
