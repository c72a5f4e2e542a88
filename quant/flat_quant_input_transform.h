// FlatQuant's trained per-layer transform as an InputTransform (trained by flat_quant_trainer.h):
//
//   x -> (x diag(s)^-1) (P1 (x) P2),        W -> (W diag(s)) (P1 (x) P2)^-T
//
// so T(x) T_w(W)^T = x W^T for any positive s and invertible P1, P2. It also carries the
// activation and weight clip ratios learned with it (the layer's quantizers use them).
//
// Saved as kind "flatquant": params {"size", "n1", "n2", "activation_clip_ratio",
// "weight_clip_ratio"}, arrays {"scales" [size], "p1" [n1 * n1], "p2" [n2 * n2]} (row-major
// float32; the transform is built from the float32 values, so Save/Load round-trips exactly).
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/cpu/quant/kronecker_transform.h"
#include "quant/flat_quant_trainer.h"
#include "quant/input_transform.h"

namespace flatfleet::quant {

class FlatQuantInputTransform final : public InputTransform {
 public:
  static constexpr std::string_view kKind = "flatquant";

  // Errors unless n1 * n2 = scales.size(), the scales are positive and finite, the factors are
  // invertible and the clip ratios are in (0, 1].
  static absl::StatusOr<std::shared_ptr<const FlatQuantInputTransform>> Create(
      std::vector<float> scales, int64_t n1, std::vector<float> p1, int64_t n2,
      std::vector<float> p2, float activation_clip_ratio, float weight_clip_ratio);
  // From trained parameters (rounded to float32).
  static absl::StatusOr<std::shared_ptr<const FlatQuantInputTransform>> FromParams(
      const FlatQuantParams& params);
  static absl::StatusOr<std::shared_ptr<const InputTransform>> Load(const TransformState& state);

  std::string_view kind() const override { return kKind; }
  int64_t in_features() const override { return kronecker_.size(); }
  int64_t out_features() const override { return kronecker_.size(); }
  void ApplyToActivations(std::span<const float> rows, int64_t m,
                          std::span<float> out) const override;
  void TransformWeight(std::span<const float> weight, int64_t n,
                       std::span<float> out) const override;
  TransformState Save() const override;

  // The stored float32 parameters (what the GPU kernel, kernels/cuda/kronecker_transform.h, reads).
  int64_t n1() const { return n1_; }
  int64_t n2() const { return n2_; }
  const std::vector<float>& scales() const { return scales_; }
  const std::vector<float>& p1() const { return p1_; }
  const std::vector<float>& p2() const { return p2_; }
  float activation_clip_ratio() const { return activation_clip_ratio_; }
  float weight_clip_ratio() const { return weight_clip_ratio_; }

 private:
  FlatQuantInputTransform(KroneckerTransform kronecker) : kronecker_(std::move(kronecker)) {}

  KroneckerTransform kronecker_;
  int64_t n1_ = 0, n2_ = 0;
  std::vector<float> scales_, p1_, p2_;
  float activation_clip_ratio_ = 1.0f;
  float weight_clip_ratio_ = 1.0f;
};

}  // namespace flatfleet::quant
