#include "quant/data_dependent_linear.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "quant/flatten_input_transform.h"
#include "quant/gptq_device_backend.h"
#include "quant/phase_timer.h"
#include "quant/smooth_input_transform.h"

namespace flatfleet::quant {
namespace {

bool IsChannelwise(const InputTransformChain& chain) {
  for (const auto& transform : chain.transforms()) {
    if (transform->kind() != SmoothInputTransform::kKind &&
        transform->kind() != FlattenInputTransform::kKind) {
      return false;
    }
  }
  return true;
}

// M^T G M for the linear map x -> x M of a non-empty `chain`, G [in, in] symmetric. Each float
// intermediate ([in, k] or [k, k]) is freed as soon as the next one exists, so the peak is G, two
// float intermediates and the result; `consumable` (G itself, no longer needed) is freed once its
// float copy exists.
std::vector<double> TransformGram(const InputTransformChain& chain, const std::vector<double>& gram,
                                  int64_t in, std::vector<double>* consumable = nullptr) {
  const int64_t k = chain.OutFeatures(in);
  std::vector<float> right;  // G M, [in, k]
  {
    const std::vector<float> rows(gram.begin(), gram.end());
    if (consumable != nullptr) std::vector<double>().swap(*consumable);
    right = chain.ApplyToActivations(rows, in);
  }
  std::vector<float> transposed(k * in);
  for (int64_t i = 0; i < in; ++i) {
    for (int64_t j = 0; j < k; ++j) transposed[j * in + i] = right[i * k + j];
  }
  right = {};
  std::vector<float> both = chain.ApplyToActivations(transposed, k);  // M^T G M, [k, k]
  transposed = {};
  std::vector<double> out(k * k);
  for (int64_t i = 0; i < k; ++i) {
    for (int64_t j = 0; j < k; ++j) {
      // Symmetrise away the float rounding of the two passes.
      out[i * k + j] = 0.5 * (double{both[i * k + j]} + double{both[j * k + i]});
    }
  }
  return out;
}

constexpr int64_t kAlphaSearchRows = 128;

// x W^T (+ b) in double, [m, out].
std::vector<double> FloatLayerOutput(const Tensor& weight, const Tensor* bias,
                                     std::span<const float> rows, int64_t m) {
  const int64_t n = weight.dim(0), in = weight.dim(1);
  std::vector<double> out(m * n);
  for (int64_t r = 0; r < m; ++r) {
    for (int64_t j = 0; j < n; ++j) {
      double sum = bias == nullptr ? 0.0 : bias->data()[j];
      const float* w = weight.data() + j * in;
      for (int64_t c = 0; c < in; ++c) sum += double{rows[r * in + c]} * w[c];
      out[r * n + j] = sum;
    }
  }
  return out;
}

absl::StatusOr<double> OutputError(const QuantizedLinear& layer, const std::vector<double>& exact,
                                   std::span<const float> rows, int64_t m) {
  std::vector<float> quantized(m * layer.out_features());
  FF_RETURN_IF_ERROR(layer.Forward(rows, m, quantized));
  double error = 0.0;
  for (size_t i = 0; i < quantized.size(); ++i) {
    const double d = exact[i] - quantized[i];
    error += d * d;
  }
  return error;
}

}  // namespace

bool NeedsRawStatistics(const QuantRecipe& recipe) {
  return recipe.spec.smooth.enabled || recipe.spec.flatten.enabled ||
         recipe.spec.weight_quantizer == WeightQuantizer::kGptq;
}

CalibrationOptions CalibrationOptionsFor(const QuantRecipe& recipe) {
  CalibrationOptions options;
  options.max_raw_samples = ActivationCalibration::kMaxRawSamples;
  options.record_gram = recipe.spec.weight_quantizer == WeightQuantizer::kGptq;
  return options;
}

std::vector<double> SmoothAlphaCandidates(double configured_alpha) {
  std::vector<double> alphas = {0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8};
  if (std::find(alphas.begin(), alphas.end(), configured_alpha) == alphas.end()) {
    alphas.push_back(configured_alpha);
  }
  return alphas;
}

absl::StatusOr<DataDependentInputs> BuildDataDependentInputs(
    const Tensor& weight, const QuantRecipe& recipe, const ActivationCalibration& calibration,
    const InputTransformChain& base, double smooth_alpha, std::vector<double>* consumable_gram) {
  if (consumable_gram != nullptr && consumable_gram != &calibration.raw_gram) {
    return absl::InternalError("a consumable Gram must be the calibration's own");
  }
  const QuantSpec& spec = recipe.spec;
  const int64_t n = weight.dim(0);
  const int64_t in = weight.dim(1);
  if (NeedsRawStatistics(recipe) &&
      (!calibration.has_raw() ||
       static_cast<int64_t>(calibration.raw_channel_absmax.size()) != in)) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "recipe %s needs raw-input calibration of this layer (%d inputs)", recipe.name, in));
  }
  std::vector<std::shared_ptr<const InputTransform>> transforms;
  std::vector<float> absmax = calibration.raw_channel_absmax;  // of the chain built so far
  if (spec.smooth.enabled) {
    std::vector<float> scales = SmoothingScales(absmax, weight.span(), n, smooth_alpha);
    for (int64_t j = 0; j < in; ++j) absmax[j] /= scales[j];
    FF_ASSIGN_OR_RETURN(auto smooth, SmoothInputTransform::Create(std::move(scales), smooth_alpha));
    transforms.push_back(std::move(smooth));
  }
  if (spec.flatten.enabled) {
    if (!base.empty()) {
      return absl::UnimplementedError("FlattenQuant before other online transforms");
    }
    FlattenPlan plan = PlanFlatten(absmax, spec.flatten.threshold, spec.flatten.max_growth);
    FF_ASSIGN_OR_RETURN(auto flatten, FlattenInputTransform::Create(std::move(plan.splits)));
    transforms.push_back(std::move(flatten));
  }
  const bool data_dependent = !transforms.empty();
  for (const auto& transform : base.transforms()) transforms.push_back(transform);

  DataDependentInputs result;
  FF_ASSIGN_OR_RETURN(result.transforms, InputTransformChain::Create(std::move(transforms)));
  const int64_t k = result.transforms.OutFeatures(in);
  result.transformed.rows_seen = calibration.rows_seen;
  if (!data_dependent) {
    result.transformed.channel_absmax = calibration.channel_absmax;
  } else if (IsChannelwise(result.transforms)) {
    // Positive per-channel scalings and copies map channel maxima to channel maxima exactly.
    result.transformed.channel_absmax =
        result.transforms.ApplyToActivations(calibration.raw_channel_absmax, 1);
  } else {
    const std::vector<float> sample = result.transforms.ApplyToActivations(
        calibration.raw_samples, calibration.raw_sample_rows(in));
    result.transformed.channel_absmax.assign(k, 0.0f);
    for (int64_t r = 0; r < calibration.raw_sample_rows(in); ++r) {
      for (int64_t c = 0; c < k; ++c) {
        result.transformed.channel_absmax[c] =
            std::max(result.transformed.channel_absmax[c], std::fabs(sample[r * k + c]));
      }
    }
  }
  if (spec.weight_quantizer == WeightQuantizer::kGptq) {
    const ScopedPhase phase(QuantizePhase::kGramFinalize);
    if (calibration.device_gram != nullptr) {
      // Accumulated on the GPU (quantize --device cuda): one copy down, owned here.
      FF_ASSIGN_OR_RETURN(std::vector<double> gram, calibration.device_gram->ToHost());
      result.hessian =
          result.transforms.empty() ? std::move(gram) : TransformGram(result.transforms, gram, in);
    } else if (!calibration.raw_gram.empty()) {
      // No copy when no transform changes the inputs: GPTQ factors the calibration's own Gram
      // when it may (consumable), else copies it once into its working buffer.
      if (result.transforms.empty()) {
        if (consumable_gram != nullptr) {
          result.hessian = std::move(*consumable_gram);
        } else {
          result.raw_hessian = &calibration.raw_gram;
        }
      } else {
        result.hessian =
            TransformGram(result.transforms, calibration.raw_gram, in, consumable_gram);
      }
    } else {  // from the sample
      std::vector<double> gram(in * in, 0.0);
      for (int64_t r = 0; r < calibration.raw_sample_rows(in); ++r) {
        const float* row = calibration.raw_samples.data() + r * in;
        for (int64_t i = 0; i < in; ++i) {
          for (int64_t j = 0; j < in; ++j) gram[i * in + j] += double{row[i]} * row[j];
        }
      }
      result.hessian =
          result.transforms.empty() ? std::move(gram) : TransformGram(result.transforms, gram, in);
    }
  }
  return result;
}

absl::StatusOr<double> LayerOutputError(const QuantizedLinear& layer, const Tensor& weight,
                                        std::span<const float> rows, int64_t m) {
  const Tensor bias({layer.out_features()}, layer.bias().empty()
                                                ? std::vector<float>(layer.out_features(), 0.0f)
                                                : layer.bias());
  return OutputError(layer, FloatLayerOutput(weight, &bias, rows, m), rows, m);
}

absl::StatusOr<QuantizedLinear> QuantizeDataDependentLinear(
    const Tensor& weight, const Tensor* bias, const QuantRecipe& recipe,
    const ActivationCalibration* calibration, const InputTransformChain& base,
    std::vector<double>* consumable_gram, Tensor* consumable_weight) {
  if (weight.rank() != 2) return absl::InvalidArgumentError("weight must be [out, in]");
  const bool calibrated = calibration != nullptr && !calibration->empty();
  if (!calibrated) {
    if (NeedsRawStatistics(recipe)) {
      return absl::FailedPreconditionError(absl::StrFormat(
          "recipe %s builds transforms or weights from calibration data; calibrate first",
          recipe.name));
    }
    return QuantizedLinear::Create(weight, bias, recipe, nullptr, base, {}, consumable_weight);
  }
  if (!NeedsRawStatistics(recipe)) {
    return QuantizedLinear::Create(weight, bias, recipe, calibration, base, {}, consumable_weight);
  }
  const SmoothSpec& smooth = recipe.spec.smooth;
  std::vector<double> alphas = {smooth.alpha};
  if (smooth.enabled && smooth.search_alpha) alphas = SmoothAlphaCandidates(smooth.alpha);
  // The search scores candidates on at most kAlphaSearchRows evenly spaced sample rows.
  std::vector<float> search_rows;
  int64_t search_count = 0;
  std::vector<double> exact;
  if (alphas.size() > 1) {
    const int64_t in = weight.dim(1);
    const int64_t stride = std::max<int64_t>(
        1, (calibration->raw_sample_rows(in) + kAlphaSearchRows - 1) / kAlphaSearchRows);
    for (int64_t r = 0; r < calibration->raw_sample_rows(in); r += stride, ++search_count) {
      search_rows.insert(search_rows.end(), calibration->raw_samples.begin() + r * in,
                         calibration->raw_samples.begin() + (r + 1) * in);
    }
    exact = FloatLayerOutput(weight, bias, search_rows, search_count);
  }
  std::optional<QuantizedLinear> best;
  double best_error = std::numeric_limits<double>::infinity();
  for (double alpha : alphas) {
    // Every candidate of a search reads the Gram: only a single one may consume it.
    FF_ASSIGN_OR_RETURN(DataDependentInputs inputs,
                        BuildDataDependentInputs(weight, recipe, *calibration, base, alpha,
                                                 alphas.size() == 1 ? consumable_gram : nullptr));
    // Later candidates read the weight again: only a single one may consume it.
    FF_ASSIGN_OR_RETURN(QuantizedLinear layer,
                        QuantizedLinear::Create(weight, bias, recipe, &inputs.transformed,
                                                std::move(inputs.transforms), inputs.gptq_hessian(),
                                                alphas.size() == 1 ? consumable_weight : nullptr));
    if (alphas.size() == 1) return layer;
    FF_ASSIGN_OR_RETURN(double error, OutputError(layer, exact, search_rows, search_count));
    if (error < best_error) {  // strict: ties keep the earlier (smaller) alpha
      best_error = error;
      best = std::move(layer);
    }
  }
  return *std::move(best);
}

}  // namespace flatfleet::quant
