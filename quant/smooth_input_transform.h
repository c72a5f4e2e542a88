// SmoothQuant's per-input-channel scaling (arXiv 2211.10438) as an InputTransform:
//
//   x -> x / s  (column j divided by s_j),   W -> W diag(s)  (column j multiplied by s_j),
//   s_j = max|X_j|^alpha / max|W_j|^(1 - alpha)
//
// from calibrated raw input channel maxima max|X_j| and the weight's column maxima max|W_j|. It
// moves quantization difficulty from activation outlier channels into the weight. Here it runs
// online (one division per element); in a deployed model it folds into the preceding RMSNorm's
// weight (q/k/v, gate/up: gamma_j / s_j) or the previous linear's output rows (o_proj into
// v_proj, down_proj into up_proj), so it costs nothing there. MoE experts share one input, so
// per-expert scales stay online (or are shared across experts).
//
// Saved as kind "smooth", params {"size", "alpha"}, array "scales" [size]: the exact scales.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "quant/input_transform.h"

namespace flatfleet::quant {

class SmoothInputTransform final : public InputTransform {
 public:
  static constexpr std::string_view kKind = "smooth";

  // Errors unless every scale is positive and finite. `alpha` is informative (how they were
  // chosen; saved with them).
  static absl::StatusOr<std::shared_ptr<const SmoothInputTransform>> Create(
      std::vector<float> scales, double alpha);
  static absl::StatusOr<std::shared_ptr<const InputTransform>> Load(const TransformState& state);

  std::string_view kind() const override { return kKind; }
  int64_t in_features() const override { return static_cast<int64_t>(scales_.size()); }
  int64_t out_features() const override { return static_cast<int64_t>(scales_.size()); }
  void ApplyToActivations(std::span<const float> rows, int64_t m,
                          std::span<float> out) const override;
  void TransformWeight(std::span<const float> weight, int64_t n,
                       std::span<float> out) const override;
  TransformState Save() const override;

  const std::vector<float>& scales() const { return scales_; }
  double alpha() const { return alpha_; }

 private:
  SmoothInputTransform(std::vector<float> scales, double alpha)
      : scales_(std::move(scales)), alpha_(alpha) {}

  std::vector<float> scales_;
  double alpha_;
};

// s_j = max|X_j|^alpha / max|W_j|^(1 - alpha) for `weight` [n, in] and raw activation channel
// maxima [in]. Channels with a zero maximum on either side get s_j = 1; scales are clamped to
// [1e-5, 1e5] so that neither side under- or overflows.
std::vector<float> SmoothingScales(std::span<const float> activation_channel_absmax,
                                   std::span<const float> weight, int64_t n, double alpha);

}  // namespace flatfleet::quant
