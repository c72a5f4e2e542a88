#include "quant/quantized_linear.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "common/dtype.h"
#include "common/status_macros.h"
#include "kernels/cpu/quant/quantized_gemm.h"
#include "kernels/cpu/quant/rtn_quantizer.h"
#include "quant/gptq_device_backend.h"
#include "quant/gptq_quantizer.h"
#include "quant/hadamard_input_transform.h"
#include "quant/phase_timer.h"
#include "quant/weight_clip_search.h"

namespace flatfleet::quant {

WeightGroupChoice ChooseWeightGroupSize(int64_t requested, int64_t cols) {
  if (requested <= 0 || requested == cols) return {0, GroupSizeFallback::kNone};
  // A request wider than the row: the whole row is the largest divisor below it.
  if (requested > cols) return {0, GroupSizeFallback::kPerChannel};
  if (cols % requested == 0) return {requested, GroupSizeFallback::kNone};
  // Only sizes the GPU can run.
  for (int64_t size = requested / kGpuWeightGroupMultiple * kGpuWeightGroupMultiple; size > 0;
       size -= kGpuWeightGroupMultiple) {
    if (cols % size == 0) return {size, GroupSizeFallback::kLargestGpuDivisor};
  }
  return {0, GroupSizeFallback::kPerChannel};
}

int64_t EffectiveGroupSize(int64_t requested, int64_t cols) {
  return ChooseWeightGroupSize(requested, cols).group_size;
}

std::string_view GroupSizeFallbackName(GroupSizeFallback fallback) {
  switch (fallback) {
    case GroupSizeFallback::kNone:
      return "none";
    case GroupSizeFallback::kLargestGpuDivisor:
      return "largest_gpu_divisor";
    case GroupSizeFallback::kPerChannel:
      return "per_channel";
  }
  return "?";
}

absl::StatusOr<InputTransformChain> OnlineTransformsFor(const QuantRecipe& recipe,
                                                        int64_t in_features) {
  switch (recipe.spec.transform.kind) {
    case TransformKind::kNone:
      return InputTransformChain();
    case TransformKind::kHadamard: {
      FF_ASSIGN_OR_RETURN(std::shared_ptr<const HadamardInputTransform> rotation,
                          HadamardInputTransform::Create(in_features, recipe.spec.transform.seed));
      return InputTransformChain::Create({std::move(rotation)});
    }
    case TransformKind::kKronecker:
      return InputTransformChain();  // trained from calibration (calibrated_linear.h)
  }
  return absl::InvalidArgumentError("unknown transform kind");
}

std::vector<int64_t> ChooseOutlierChannels(std::span<const float> weight, int64_t out_features,
                                           int64_t in_features, int64_t count,
                                           const ActivationCalibration* calibration) {
  count = std::clamp<int64_t>(count, 0, in_features - 1);
  if (calibration != nullptr && !calibration->empty()) {
    return SelectOutlierChannels(calibration->channel_absmax, 1, in_features, count);
  }
  std::vector<double> column_norms(in_features, 0.0);
  for (int64_t n = 0; n < out_features; ++n) {
    for (int64_t k = 0; k < in_features; ++k) {
      const double w = weight[n * in_features + k];
      column_norms[k] += w * w;
    }
  }
  std::vector<int64_t> order(in_features);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t a, int64_t b) { return column_norms[a] > column_norms[b]; });
  order.resize(count);
  std::sort(order.begin(), order.end());
  return order;
}

absl::StatusOr<QuantizedLinear> QuantizedLinear::Create(const Tensor& weight, const Tensor* bias,
                                                        const QuantRecipe& recipe,
                                                        const ActivationCalibration* calibration) {
  if (weight.rank() != 2) return absl::InvalidArgumentError("weight must be [out, in]");
  FF_ASSIGN_OR_RETURN(InputTransformChain transforms, OnlineTransformsFor(recipe, weight.dim(1)));
  return Create(weight, bias, recipe, calibration, std::move(transforms));
}

absl::StatusOr<QuantizedLinear> QuantizedLinear::Create(const Tensor& weight, const Tensor* bias,
                                                        const QuantRecipe& recipe,
                                                        const ActivationCalibration* calibration,
                                                        InputTransformChain transforms,
                                                        GptqHessian hessian,
                                                        Tensor* consumable_weight) {
  if (weight.rank() != 2) return absl::InvalidArgumentError("weight must be [out, in]");
  if (consumable_weight != nullptr && consumable_weight != &weight) {
    return absl::InternalError("a consumable weight must be the weight itself");
  }
  const QuantSpec& spec = recipe.spec;
  QuantizedLinear layer;
  layer.out_features_ = weight.dim(0);
  layer.in_features_ = weight.dim(1);
  if (!transforms.empty() && transforms.transforms().front()->in_features() != weight.dim(1)) {
    return absl::InvalidArgumentError("input transforms do not match the layer's inputs");
  }
  layer.transformed_features_ = transforms.OutFeatures(layer.in_features_);
  const int64_t n = layer.out_features_;
  const int64_t k = layer.transformed_features_;
  if (bias != nullptr) {
    if (bias->size() != n) return absl::InvalidArgumentError("bias must be [out]");
    layer.bias_ = bias->vector();
  }
  if (calibration != nullptr && !calibration->empty() &&
      static_cast<int64_t>(calibration->channel_absmax.size()) != k) {
    return absl::InvalidArgumentError("calibration does not match the layer's inputs");
  }

  layer.activation_format_.bits = spec.activation.bits;
  layer.activation_format_.symmetric = spec.activation.symmetric;
  layer.activation_format_.group_size = 0;
  layer.activation_format_.clip_ratio = static_cast<float>(spec.activation.clip_ratio);
  if (spec.activation.granularity == ActivationGranularity::kPerTensor) {
    if (calibration == nullptr || calibration->empty()) {
      return absl::FailedPreconditionError(
          "per-tensor static activation scales need calibration data");
    }
    FF_ASSIGN_OR_RETURN(uint16_t scale,
                        CalibratePerTensorScale(calibration->channel_absmax, spec.activation.bits,
                                                layer.activation_format_.clip_ratio));
    layer.static_scale_ = scale;
  }

  layer.transforms_ = std::move(transforms);
  // `weight`'s values are read for the last time here (a consumed one has none afterwards).
  if (consumable_weight != nullptr && layer.transforms_.empty()) {
    layer.folded_weight_ = std::move(consumable_weight->vector());  // the identity: no copy
  } else {
    layer.folded_weight_ = layer.transforms_.TransformWeight(weight.span(), n);
  }

  QuantFormat weight_format;
  weight_format.bits = spec.weight.bits;
  weight_format.symmetric = spec.weight.symmetric;
  weight_format.clip_ratio = static_cast<float>(spec.weight.clip_ratio);
  weight_format.balanced = spec.weight.balanced;

  if (spec.outlier_channels > 0) {
    if (layer.static_scale_) {
      return absl::UnimplementedError("QUIK with per-tensor static activations");
    }
    layer.gemm_kind_ = LinearGemmKind::kQuik;
    std::vector<int64_t> outliers =
        ChooseOutlierChannels(layer.folded_weight_, n, k, spec.outlier_channels, calibration);
    weight_format.group_size =
        EffectiveGroupSize(spec.weight.group_size, k - static_cast<int64_t>(outliers.size()));
    FF_ASSIGN_OR_RETURN(layer.quik_, QuantizeQuikWeight(layer.folded_weight_, n, k,
                                                        std::move(outliers), weight_format));
    return layer;
  }

  weight_format.group_size = EffectiveGroupSize(spec.weight.group_size, k);
  {
    const ScopedPhase phase(spec.weight_quantizer == WeightQuantizer::kGptq
                                ? QuantizePhase::kGptqSolve
                                : QuantizePhase::kRtn);
    if (spec.weight_quantizer == WeightQuantizer::kGptq) {
      if (hessian.empty()) {
        return absl::FailedPreconditionError("GPTQ needs calibration data (the inputs' X^T X)");
      }
      if (hessian.size() != k * k) {
        return absl::InvalidArgumentError("GPTQ Hessian does not match the layer's inputs");
      }
      GptqOptions options;
      options.damp = spec.gptq.damp;
      options.block_size = spec.gptq.block_size;
      options.act_order = spec.gptq.act_order;
      options.clip_search = recipe.weight_clip_search;
      if (hessian.consumed != nullptr) {
        FF_ASSIGN_OR_RETURN(layer.weight_, QuantizeGptqInPlaceOnSelectedDevice(
                                               layer.folded_weight_, n, k, *hessian.consumed,
                                               weight_format, options));
      } else {
        FF_ASSIGN_OR_RETURN(layer.weight_,
                            QuantizeGptqOnSelectedDevice(layer.folded_weight_, n, k, *hessian.read,
                                                         weight_format, options));
      }
    } else if (recipe.weight_clip_search) {
      FF_ASSIGN_OR_RETURN(ClipSearchResult searched,
                          QuantizeRtnWithClipSearch(layer.folded_weight_, n, k, weight_format));
      layer.weight_ = std::move(searched.matrix);
      layer.clip_ratios_ = std::move(searched.clip_ratios);
    } else {
      FF_ASSIGN_OR_RETURN(layer.weight_, QuantizeRtn(layer.folded_weight_, n, k, weight_format));
    }
  }
  // Integer scales of a per-channel fallback would be one multiplier per row: the float-scale
  // GEMM computes the same with no integer step.
  if (spec.scale_kind == ScaleKind::kInteger && weight_format.group_size > 0) {
    layer.gemm_kind_ = LinearGemmKind::kIntegerScales;
    FF_ASSIGN_OR_RETURN(
        layer.integer_scaled_,
        MakeIntegerScaledWeight(layer.weight_, layer.activation_format_, spec.max_amplifier_bits));
  } else {
    // Refuse K that could overflow int32 now rather than at the first Forward.
    QuantizedMatrix probe;
    probe.rows = 0;
    probe.cols = k;
    probe.format = layer.activation_format_;
    FF_RETURN_IF_ERROR(CheckInt32Gemm(probe, layer.weight_));
  }
  return layer;
}

absl::StatusOr<QuantizedLinear> QuantizedLinear::FromParts(QuantizedLinearParts parts) {
  QuantizedLinear layer;
  if (parts.in_features <= 0) return absl::InvalidArgumentError("in_features must be positive");
  const QuantFormat& activation = parts.activation_format;
  if (activation.bits < 2 || activation.bits > 8 || activation.group_size != 0 ||
      !(activation.clip_ratio > 0.0f && activation.clip_ratio <= 1.0f)) {
    return absl::InvalidArgumentError(
        "activation format: bits must be 2..8, per token (group_size 0), clip ratio in (0, 1]");
  }
  if (!parts.transforms.empty() &&
      parts.transforms.transforms().front()->in_features() != parts.in_features) {
    return absl::InvalidArgumentError(
        absl::StrCat("input transforms take ", parts.transforms.transforms().front()->in_features(),
                     " features but the layer has ", parts.in_features, " inputs"));
  }
  const int64_t k = parts.transforms.OutFeatures(parts.in_features);
  int64_t n = 0;
  switch (parts.gemm_kind) {
    case LinearGemmKind::kFloatScales:
    case LinearGemmKind::kIntegerScales: {
      const QuantizedMatrix& weight = parts.gemm_kind == LinearGemmKind::kFloatScales
                                          ? parts.weight
                                          : parts.integer_scaled.weight;
      FF_RETURN_IF_ERROR(weight.Validate());
      if (weight.cols != k) {
        return absl::InvalidArgumentError(absl::StrCat(
            "weight has ", weight.cols, " columns but the transformed input has ", k, " features"));
      }
      n = weight.rows;
      QuantizedMatrix probe;
      probe.cols = k;
      probe.format = activation;
      FF_RETURN_IF_ERROR(CheckInt32Gemm(probe, weight));
      if (parts.gemm_kind == LinearGemmKind::kIntegerScales) {
        const IntegerScaledWeight& scaled = parts.integer_scaled;
        if (scaled.weight.format.group_size == 0) {
          return absl::InvalidArgumentError("integer scales need per-group weights");
        }
        if (scaled.amplifier_bits < 0 || scaled.amplifier_bits > 30 ||
            static_cast<int64_t>(scaled.multipliers.size()) != n * weight.GroupsPerRow() ||
            static_cast<int64_t>(scaled.base_scales.size()) != n) {
          return absl::InvalidArgumentError(
              "integer scales: amplifier outside 0..30 or multipliers / base scales of the wrong "
              "size");
        }
        for (int32_t mult : scaled.multipliers) {
          if (mult < 1) return absl::InvalidArgumentError("integer scale multipliers must be >= 1");
        }
        for (uint16_t base : scaled.base_scales) {
          const float value = HalfToFloat(base);
          if (!(value > 0.0f) || !std::isfinite(value)) {
            return absl::InvalidArgumentError("integer scales: base scales must be positive");
          }
        }
      }
      break;
    }
    case LinearGemmKind::kQuik: {
      const QuikWeight& quik = parts.quik;
      FF_RETURN_IF_ERROR(quik.base.Validate());
      const int64_t outliers = static_cast<int64_t>(quik.outlier_channels.size());
      if (quik.k != k || quik.n != quik.base.rows || quik.base.cols != k - outliers ||
          static_cast<int64_t>(quik.outlier_weights.size()) != quik.n * outliers) {
        return absl::InvalidArgumentError("QUIK weight: shapes do not match the layer");
      }
      for (int64_t i = 0; i < outliers; ++i) {
        const int64_t c = quik.outlier_channels[i];
        if (c < 0 || c >= k || (i > 0 && c <= quik.outlier_channels[i - 1])) {
          return absl::InvalidArgumentError(
              absl::StrCat("QUIK outlier channels must be ascending, distinct and in [0, ", k,
                           "); got ", c, " at index ", i));
        }
      }
      if (parts.static_activation_scale) {
        return absl::InvalidArgumentError("QUIK with per-tensor static activations");
      }
      n = quik.n;
      break;
    }
    default:
      return absl::InvalidArgumentError("unknown gemm kind");
  }
  if (!parts.bias.empty() && static_cast<int64_t>(parts.bias.size()) != n) {
    return absl::InvalidArgumentError("bias must be [out]");
  }
  if (!parts.output_shift.empty() && (static_cast<int64_t>(parts.output_shift.size()) != n ||
                                      parts.gemm_kind != LinearGemmKind::kFloatScales)) {
    return absl::InvalidArgumentError("output shift must be [out], on float-scale layers only");
  }
  for (float shift : parts.output_shift) {
    if (!std::isfinite(shift)) return absl::InvalidArgumentError("output shift must be finite");
  }
  if (parts.static_activation_scale) {
    const float scale = HalfToFloat(*parts.static_activation_scale);
    if (!(scale > 0.0f) || !std::isfinite(scale)) {
      return absl::InvalidArgumentError("static activation scale must be positive and finite");
    }
  }
  layer.out_features_ = n;
  layer.in_features_ = parts.in_features;
  layer.transformed_features_ = k;
  layer.gemm_kind_ = parts.gemm_kind;
  layer.activation_format_ = activation;
  layer.static_scale_ = parts.static_activation_scale;
  layer.transforms_ = std::move(parts.transforms);
  layer.weight_ = std::move(parts.weight);
  layer.integer_scaled_ = std::move(parts.integer_scaled);
  layer.quik_ = std::move(parts.quik);
  layer.bias_ = std::move(parts.bias);
  layer.output_shift_ = std::move(parts.output_shift);
  return layer;
}

QuantizedLinearParts QuantizedLinear::ToParts() const {
  QuantizedLinearParts parts;
  parts.in_features = in_features_;
  parts.gemm_kind = gemm_kind_;
  parts.activation_format = activation_format_;
  parts.static_activation_scale = static_scale_;
  parts.transforms = transforms_;
  parts.output_shift = output_shift_;
  switch (gemm_kind_) {
    case LinearGemmKind::kFloatScales:
      parts.weight = weight_;
      break;
    case LinearGemmKind::kIntegerScales:
      parts.integer_scaled = integer_scaled_;
      break;
    case LinearGemmKind::kQuik:
      parts.quik = quik_;
      break;
  }
  parts.bias = bias_;
  return parts;
}

std::vector<float> QuantizedLinear::TransformActivations(std::span<const float> rows,
                                                         int64_t m) const {
  return transforms_.ApplyToActivations(rows, m);
}

absl::StatusOr<QuantizedMatrix> QuantizedLinear::QuantizeActivations(
    std::span<const float> transformed, int64_t m) const {
  if (static_scale_) {
    return QuantizeWithStaticScale(transformed, m, transformed_features_, activation_format_.bits,
                                   *static_scale_);
  }
  return QuantizeRtn(transformed, m, transformed_features_, activation_format_);
}

absl::Status QuantizedLinear::Forward(std::span<const float> x, int64_t m,
                                      std::span<float> y) const {
  if (static_cast<int64_t>(x.size()) != m * in_features_ ||
      static_cast<int64_t>(y.size()) != m * out_features_) {
    return absl::InvalidArgumentError("QuantizedLinear::Forward: shapes");
  }
  const std::vector<float> rotated = TransformActivations(x, m);
  std::vector<float> output;
  switch (gemm_kind_) {
    case LinearGemmKind::kQuik: {
      FF_ASSIGN_OR_RETURN(QuikGemmResult result, QuikGemm(rotated, m, quik_, activation_format_,
                                                          OperandChecks::kShapesOnly));
      output = std::move(result.output);
      break;
    }
    case LinearGemmKind::kIntegerScales: {
      FF_ASSIGN_OR_RETURN(QuantizedMatrix activations, QuantizeActivations(rotated, m));
      FF_ASSIGN_OR_RETURN(
          IntegerScaleGemmResult result,
          IntegerScaleGemm(activations, integer_scaled_, OperandChecks::kShapesOnly));
      output = std::move(result.output);
      break;
    }
    case LinearGemmKind::kFloatScales: {
      FF_ASSIGN_OR_RETURN(QuantizedMatrix activations, QuantizeActivations(rotated, m));
      output.resize(m * out_features_);
      // The weights were validated when the layer was built; the activations are fresh codes.
      FF_RETURN_IF_ERROR(
          QuantizedGemmOutput(activations, weight_, output, OperandChecks::kShapesOnly));
      break;
    }
  }
  for (int64_t r = 0; r < m; ++r) {
    for (int64_t j = 0; j < out_features_; ++j) {
      y[r * out_features_ + j] = output[r * out_features_ + j] + (bias_.empty() ? 0.0f : bias_[j]) +
                                 (output_shift_.empty() ? 0.0f : output_shift_[j]);
    }
  }
  return absl::OkStatus();
}

absl::Status QuantizedLinear::ApplyOutputCorrection(std::span<const float> scale,
                                                    std::span<const float> shift) {
  if (gemm_kind_ != LinearGemmKind::kFloatScales) {
    return absl::FailedPreconditionError("output correction needs a float-scale GEMM layer");
  }
  if (static_cast<int64_t>(scale.size()) != out_features_ ||
      static_cast<int64_t>(shift.size()) != out_features_) {
    return absl::InvalidArgumentError("output correction: scale and shift must be [out]");
  }
  const int64_t groups = weight_.GroupsPerRow();
  std::vector<uint16_t> scales = weight_.scales;
  for (int64_t j = 0; j < out_features_; ++j) {
    if (!(scale[j] > 0.0f) || !std::isfinite(scale[j]) || !std::isfinite(shift[j])) {
      return absl::InvalidArgumentError(absl::StrCat(
          "output correction: channel ", j, " has scale ", scale[j], ", shift ", shift[j]));
    }
    for (int64_t g = 0; g < groups; ++g) {
      const float corrected = HalfToFloat(scales[j * groups + g]) * scale[j];
      const uint16_t half = FloatToHalf(corrected);
      if (!(HalfToFloat(half) > 0.0f) || !std::isfinite(HalfToFloat(half))) {
        return absl::OutOfRangeError(
            absl::StrCat("output correction: channel ", j, " scale leaves the FP16 range"));
      }
      scales[j * groups + g] = half;
    }
  }
  weight_.scales = std::move(scales);
  if (output_shift_.empty()) output_shift_.assign(out_features_, 0.0f);
  for (int64_t j = 0; j < out_features_; ++j) output_shift_[j] += shift[j];
  return absl::OkStatus();
}

absl::Status QuantizedLinear::ForwardFloat(std::span<const float> x, int64_t m,
                                           std::span<float> y) const {
  if (static_cast<int64_t>(x.size()) != m * in_features_ ||
      static_cast<int64_t>(y.size()) != m * out_features_) {
    return absl::InvalidArgumentError("QuantizedLinear::ForwardFloat: shapes");
  }
  if (folded_weight_.empty()) {
    return absl::FailedPreconditionError(
        "ForwardFloat needs the float weight, which a stored layer does not have");
  }
  const std::vector<float> rotated = TransformActivations(x, m);
  const int64_t k = transformed_features_;
  for (int64_t r = 0; r < m; ++r) {
    const float* row = rotated.data() + r * k;
    for (int64_t j = 0; j < out_features_; ++j) {
      const float* w = folded_weight_.data() + j * k;
      double sum = bias_.empty() ? 0.0 : bias_[j];
      for (int64_t i = 0; i < k; ++i) sum += static_cast<double>(row[i]) * w[i];
      y[r * out_features_ + j] = static_cast<float>(sum);
    }
  }
  return absl::OkStatus();
}

}  // namespace flatfleet::quant
