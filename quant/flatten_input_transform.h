// FlattenQuant's channel splitting (arXiv 2402.17985) as an InputTransform that WIDENS the
// layer: input channel j with split count k_j carries x_j / k_j in its own place and in k_j - 1
// extra channels appended after the original ones (ascending j); the weight keeps its columns
// and appends a copy of column j for each extra channel, so
//
//   T(x) T_w(W)^T = sum_j k_j * (x_j / k_j) * W[:, j] = x W^T.
//
// Splitting the few channels whose calibrated max|x| is far above the rest flattens the
// activation tensor, so ONE static per-tensor scale (INT8 or INT4) fits every channel. The cost
// is a larger GEMM K (in_features + sum_j (k_j - 1)), bounded by the recipe.
//
// Saved as kind "flatten", params {"size"}, array "splits" [size] (integers >= 1 as floats).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "quant/input_transform.h"

namespace flatfleet::quant {

class FlattenInputTransform final : public InputTransform {
 public:
  static constexpr std::string_view kKind = "flatten";
  static constexpr int32_t kMaxSplit = 4096;

  // `splits[j]` in 1..kMaxSplit: how many channels input j becomes.
  static absl::StatusOr<std::shared_ptr<const FlattenInputTransform>> Create(
      std::vector<int32_t> splits);
  static absl::StatusOr<std::shared_ptr<const InputTransform>> Load(const TransformState& state);

  std::string_view kind() const override { return kKind; }
  int64_t in_features() const override { return static_cast<int64_t>(splits_.size()); }
  int64_t out_features() const override { return static_cast<int64_t>(source_.size()); }
  void ApplyToActivations(std::span<const float> rows, int64_t m,
                          std::span<float> out) const override;
  void TransformWeight(std::span<const float> weight, int64_t n,
                       std::span<float> out) const override;
  TransformState Save() const override;

  const std::vector<int32_t>& splits() const { return splits_; }
  // out_features() - in_features(): the channels added.
  int64_t added_channels() const { return out_features() - in_features(); }

 private:
  explicit FlattenInputTransform(std::vector<int32_t> splits);

  std::vector<int32_t> splits_;
  std::vector<int64_t> source_;  // [out_features]: the input channel each output copies
};

struct FlattenPlan {
  std::vector<int32_t> splits;  // [in]
  float target = 0.0f;          // every channel max / split is <= target
  int64_t added_channels = 0;
};

// Channels above target = threshold * median_j max|x_j| are split into
// k_j = ceil(kSplitHeadroom * max|x_j| / target) copies (headroom: a value beyond the calibrated
// range saturates in every copy at once); when that adds more than max_growth * in channels,
// the target is raised (bisection) until it does not. A zero median splits nothing.
inline constexpr double kSplitHeadroom = 1.5;
FlattenPlan PlanFlatten(std::span<const float> channel_absmax, double threshold, double max_growth);

}  // namespace flatfleet::quant
