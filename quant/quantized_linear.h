// One linear layer y = x W^T (+ b) quantized by a recipe, on the integer reference kernels
// (kernels/cpu/quant, numerics in docs/QUANT_FORMATS.md):
//
//   1. online input transforms (input_transform.h): x <- T(x), e.g. x Q for a randomized
//      Hadamard rotation; the weight was rewritten by the same chain at preparation, so
//      T(x) T_w(W)^T = x W^T. The GEMM's K is the chain's output width;
//   2. activations quantized per token (dynamic) or with a calibrated per-tensor static scale;
//   3. integer GEMM: QuantizedGemm (float group scales), IntegerScaleGemm (integer group scales)
//      or QuikGemm (FP16 outlier channels + integer rest); integer parts exact, float epilogue
//      as documented there;
//   4. bias added in float32.
//
// Weight group sizes that do not divide the GEMM's K fall back to the largest divisor of K below
// the requested size that the GPU kernels accept (a multiple of 32), else to one scale per output
// channel (ChooseWeightGroupSize; llama-tiny's 688-wide down_proj and stories260K's 172-wide one
// get per-channel scales). An Integer Scale layer that falls back to per channel runs the
// float-scale GEMM: one scale per row leaves no group scales to make integer.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "common/tensor.h"
#include "kernels/cpu/quant/hadamard.h"
#include "kernels/cpu/quant/integer_scale.h"
#include "kernels/cpu/quant/quantized_matrix.h"
#include "kernels/cpu/quant/quik_gemm.h"
#include "quant/activation_calibration.h"
#include "quant/input_transform.h"
#include "quant/recipes.h"

namespace flatfleet::quant {

enum class LinearGemmKind { kFloatScales, kIntegerScales, kQuik };

// Group sizes of the CUDA W4A8 kernel are multiples of this (kernels/cuda/int8_gemm.h).
inline constexpr int64_t kGpuWeightGroupMultiple = 32;

// How a recipe's weight group size became a layer's (recorded per layer in quantization.json).
enum class GroupSizeFallback {
  kNone,               // the requested size divides K (or was 0: per channel)
  kLargestGpuDivisor,  // the largest multiple of 32 below the request that divides K
  kPerChannel,         // no such divisor (or K <= the request): one scale per output row
};
struct WeightGroupChoice {
  int64_t group_size = 0;  // 0: one group per row
  GroupSizeFallback fallback = GroupSizeFallback::kNone;
  bool operator==(const WeightGroupChoice&) const = default;
};
// The group size a layer with `cols` GEMM columns gets for a recipe's `requested` size.
WeightGroupChoice ChooseWeightGroupSize(int64_t requested, int64_t cols);
// ChooseWeightGroupSize(requested, cols).group_size.
int64_t EffectiveGroupSize(int64_t requested, int64_t cols);
std::string_view GroupSizeFallbackName(GroupSizeFallback fallback);

// The data-independent online transforms a recipe applies to the inputs of a layer with
// `in_features` inputs (a randomized Hadamard rotation, or nothing; FlatQuant's Kronecker
// transform is trained per layer from calibration, see calibrated_linear.h).
absl::StatusOr<InputTransformChain> OnlineTransformsFor(const QuantRecipe& recipe,
                                                        int64_t in_features);

// QUIK's FP16 channels: from calibration when there is some (largest max|x|), otherwise the
// input channels whose weight columns have the largest L2 norm (a weight-only proxy: a channel
// that the layer amplifies). Ascending.
std::vector<int64_t> ChooseOutlierChannels(std::span<const float> weight, int64_t out_features,
                                           int64_t in_features, int64_t count,
                                           const ActivationCalibration* calibration);

// Everything a quantized layer runs with and nothing it was made from (no float weight): what a
// quantized checkpoint stores (checkpoint/quantized_checkpoint.h). Which weight member is used
// depends on gemm_kind: `weight` (kFloatScales), `integer_scaled` (kIntegerScales) or `quik`
// (kQuik).
struct QuantizedLinearParts {
  int64_t in_features = 0;
  LinearGemmKind gemm_kind = LinearGemmKind::kFloatScales;
  QuantFormat activation_format;
  std::optional<uint16_t> static_activation_scale;  // FP16 bits; per-tensor static activations
  InputTransformChain transforms;
  QuantizedMatrix weight;
  IntegerScaledWeight integer_scaled;
  QuikWeight quik;
  std::vector<float> bias;  // [out] or empty
  // ABQ-style output correction added after the GEMM (ApplyOutputCorrection): [out] or empty;
  // float-scale layers only.
  std::vector<float> output_shift;
};

// GPTQ's [K, K] Hessian X^T X for QuantizedLinear::Create, either read (GPTQ copies it into its
// working buffer: 8 K^2 bytes more) or handed over (`consumed`: factored in place, unspecified
// afterwards; for a Hessian the caller no longer needs).
struct GptqHessian {
  GptqHessian() = default;
  GptqHessian(const std::vector<double>* read) : read(read) {}  // NOLINT: implicit on purpose
  static GptqHessian Consume(std::vector<double>& scratch) {
    GptqHessian hessian;
    hessian.consumed = &scratch;
    return hessian;
  }
  const std::vector<double>* read = nullptr;
  std::vector<double>* consumed = nullptr;
  int64_t size() const {
    return static_cast<int64_t>(consumed != nullptr ? consumed->size()
                                : read != nullptr   ? read->size()
                                                    : 0);
  }
  bool empty() const { return read == nullptr && consumed == nullptr; }
};

class QuantizedLinear {
 public:
  // `weight` [out, in], `bias` [out] or null. `calibration` (of this layer's transformed inputs)
  // is required for per-tensor static activations and optional otherwise. `transforms` are the
  // layer's online input transforms (OnlineTransformsFor(recipe) when the caller has none).
  // `hessian` [K, K] (K = the chain's output width) is X^T X of the transformed calibration
  // inputs; the GPTQ weight quantizer needs it (FailedPrecondition without), RTN ignores it.
  // `consumable_weight`, when not null, is `weight` itself, which the caller no longer needs:
  // with no transform its values move into the layer instead of being copied (it is left
  // without values; layer-by-layer quantization hands over each linear's unpacked weight).
  static absl::StatusOr<QuantizedLinear> Create(const Tensor& weight, const Tensor* bias,
                                                const QuantRecipe& recipe,
                                                const ActivationCalibration* calibration,
                                                InputTransformChain transforms,
                                                GptqHessian hessian = {},
                                                Tensor* consumable_weight = nullptr);
  // As above with the recipe's own data-independent transforms.
  static absl::StatusOr<QuantizedLinear> Create(const Tensor& weight, const Tensor* bias,
                                                const QuantRecipe& recipe,
                                                const ActivationCalibration* calibration);

  // Rebuilds a layer from stored parts, validating every invariant the kernels rely on (shapes,
  // code ranges, scales, transform widths, int32 safety). The result has no float weight, so
  // ForwardFloat is unavailable.
  static absl::StatusOr<QuantizedLinear> FromParts(QuantizedLinearParts parts);
  // The parts of this layer (FromParts(ToParts()) runs identically).
  QuantizedLinearParts ToParts() const;

  int64_t out_features() const { return out_features_; }
  int64_t in_features() const { return in_features_; }
  // Width of the transformed activations: the integer GEMM's K.
  int64_t transformed_features() const { return transformed_features_; }
  LinearGemmKind gemm_kind() const { return gemm_kind_; }
  const QuantFormat& activation_format() const { return activation_format_; }
  const std::optional<uint16_t>& static_activation_scale() const { return static_scale_; }
  const InputTransformChain& transforms() const { return transforms_; }
  // kFloatScales: the quantized weight; kIntegerScales: integer_scaled().weight; kQuik: quik().
  const QuantizedMatrix& weight() const { return weight_; }
  const IntegerScaledWeight& integer_scaled() const { return integer_scaled_; }
  const QuikWeight& quik() const { return quik_; }
  const std::vector<float>& bias() const { return bias_; }
  // The clip ratio chosen per [row][group] when the recipe searches it (else empty).
  const std::vector<float>& clip_ratios() const { return clip_ratios_; }

  // [m, in] -> [m, transformed_features()]: the online transforms.
  std::vector<float> TransformActivations(std::span<const float> rows, int64_t m) const;
  // The activation quantization step (per token or static), on already transformed rows. Not
  // used by QUIK, whose GEMM quantizes the non-outlier columns itself.
  absl::StatusOr<QuantizedMatrix> QuantizeActivations(std::span<const float> transformed,
                                                      int64_t m) const;

  // y [m, out] = the quantized layer applied to x [m, in].
  absl::Status Forward(std::span<const float> x, int64_t m, std::span<float> y) const;
  // Folds a per-output-channel affine correction y_j <- scale_j * y_j + shift_j of the GEMM output
  // (ABQ-LLM-style distribution correction, calibrated_linear.h) into the layer: scale_j
  // multiplies row j's FP16 weight scales (rounded to nearest), shift_j is added after the GEMM
  // like a bias. kFloatScales layers only; errors leave the layer unchanged.
  absl::Status ApplyOutputCorrection(std::span<const float> scale, std::span<const float> shift);
  const std::vector<float>& output_shift() const { return output_shift_; }

  // The transform algebra alone: y = T(x) T_w(W)^T + b in float (double accumulation), no
  // quantization. Equals the float layer up to rounding.
  absl::Status ForwardFloat(std::span<const float> x, int64_t m, std::span<float> y) const;
  // Frees the float copy of the (transformed) weight that ForwardFloat runs on; the quantized
  // Forward does not need it (layer-by-layer quantization keeps only the codes).
  void DropFloatWeight() { std::vector<float>().swap(folded_weight_); }

 private:
  int64_t out_features_ = 0;
  int64_t in_features_ = 0;
  int64_t transformed_features_ = 0;
  LinearGemmKind gemm_kind_ = LinearGemmKind::kFloatScales;
  QuantFormat activation_format_;
  std::optional<uint16_t> static_scale_;
  InputTransformChain transforms_;
  std::vector<float> folded_weight_;  // T_w(W), [out, transformed_features]
  QuantizedMatrix weight_;
  IntegerScaledWeight integer_scaled_;
  QuikWeight quik_;
  std::vector<float> bias_;
  std::vector<float> clip_ratios_;
  std::vector<float> output_shift_;  // [out] or empty (ApplyOutputCorrection)
};

}  // namespace flatfleet::quant
