#include "quant/flatten_input_transform.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_format.h"
#include "common/status_macros.h"

namespace flatfleet::quant {

FlattenInputTransform::FlattenInputTransform(std::vector<int32_t> splits)
    : splits_(std::move(splits)) {
  const int64_t in = static_cast<int64_t>(splits_.size());
  source_.resize(in);
  for (int64_t j = 0; j < in; ++j) source_[j] = j;
  for (int64_t j = 0; j < in; ++j) {
    for (int32_t copy = 1; copy < splits_[j]; ++copy) source_.push_back(j);
  }
}

absl::StatusOr<std::shared_ptr<const FlattenInputTransform>> FlattenInputTransform::Create(
    std::vector<int32_t> splits) {
  if (splits.empty()) return absl::InvalidArgumentError("flatten transform: no channels");
  for (size_t j = 0; j < splits.size(); ++j) {
    if (splits[j] < 1 || splits[j] > kMaxSplit) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "flatten transform: split of channel %d is %d, not in 1..%d", j, splits[j], kMaxSplit));
    }
  }
  return std::shared_ptr<const FlattenInputTransform>(new FlattenInputTransform(std::move(splits)));
}

absl::StatusOr<std::shared_ptr<const InputTransform>> FlattenInputTransform::Load(
    const TransformState& state) {
  const nlohmann::json& params = state.params;
  if (!params.is_object() || !params.contains("size") || !params["size"].is_number_integer()) {
    return absl::InvalidArgumentError("flatten transform: params need integer \"size\"");
  }
  auto splits = state.arrays.find("splits");
  if (splits == state.arrays.end()) {
    return absl::InvalidArgumentError("flatten transform: missing array \"splits\"");
  }
  const int64_t size = params["size"].get<int64_t>();
  if (static_cast<int64_t>(splits->second.size()) != size) {
    return absl::InvalidArgumentError(
        absl::StrFormat("flatten transform: array \"splits\" has %d values, size is %d",
                        splits->second.size(), size));
  }
  std::vector<int32_t> counts;
  counts.reserve(size);
  for (size_t j = 0; j < splits->second.size(); ++j) {
    const float value = splits->second[j];
    if (!(value >= 1.0f && value <= kMaxSplit) || value != std::floor(value)) {
      return absl::InvalidArgumentError(
          absl::StrFormat("flatten transform: \"splits\"[%d] = %g is not an integer in 1..%d", j,
                          value, kMaxSplit));
    }
    counts.push_back(static_cast<int32_t>(value));
  }
  FF_ASSIGN_OR_RETURN(std::shared_ptr<const FlattenInputTransform> transform,
                      Create(std::move(counts)));
  return std::shared_ptr<const InputTransform>(std::move(transform));
}

void FlattenInputTransform::ApplyToActivations(std::span<const float> rows, int64_t m,
                                               std::span<float> out) const {
  const int64_t in = in_features();
  const int64_t width = out_features();
  for (int64_t r = 0; r < m; ++r) {
    const float* row = rows.data() + r * in;
    float* dest = out.data() + r * width;
    for (int64_t c = 0; c < width; ++c) {
      const int64_t j = source_[c];
      dest[c] = splits_[j] == 1 ? row[j] : row[j] / static_cast<float>(splits_[j]);
    }
  }
}

void FlattenInputTransform::TransformWeight(std::span<const float> weight, int64_t n,
                                            std::span<float> out) const {
  const int64_t in = in_features();
  const int64_t width = out_features();
  for (int64_t r = 0; r < n; ++r) {
    for (int64_t c = 0; c < width; ++c) out[r * width + c] = weight[r * in + source_[c]];
  }
}

TransformState FlattenInputTransform::Save() const {
  TransformState state;
  state.kind = std::string(kKind);
  state.params = {{"size", in_features()}};
  state.arrays["splits"] = std::vector<float>(splits_.begin(), splits_.end());
  return state;
}

namespace {

// Split count of a channel: none within the target; otherwise enough copies to bring it to
// target / kSplitHeadroom. A value beyond the calibrated range saturates in all k copies at
// once (k times the error of an unsplit channel), so split channels keep headroom.
int64_t SplitCount(double absmax, double target) {
  if (absmax <= target) return 1;
  return std::clamp<int64_t>(static_cast<int64_t>(std::ceil(absmax * kSplitHeadroom / target)), 1,
                             FlattenInputTransform::kMaxSplit);
}

int64_t AddedChannels(std::span<const float> channel_absmax, double target) {
  int64_t added = 0;
  for (float v : channel_absmax) added += SplitCount(v, target) - 1;
  return added;
}

}  // namespace

FlattenPlan PlanFlatten(std::span<const float> channel_absmax, double threshold,
                        double max_growth) {
  FlattenPlan plan;
  const int64_t in = static_cast<int64_t>(channel_absmax.size());
  plan.splits.assign(in, 1);
  if (in == 0) return plan;
  std::vector<float> sorted(channel_absmax.begin(), channel_absmax.end());
  std::nth_element(sorted.begin(), sorted.begin() + in / 2, sorted.end());
  const double median = sorted[in / 2];
  const double largest = *std::max_element(channel_absmax.begin(), channel_absmax.end());
  if (!(median > 0.0) || !std::isfinite(largest)) {
    plan.target = static_cast<float>(largest);
    return plan;
  }
  const auto budget = static_cast<int64_t>(std::floor(max_growth * static_cast<double>(in)));
  double target = threshold * median;
  if (AddedChannels(channel_absmax, target) > budget) {
    // Smallest target within the budget: AddedChannels is non-increasing in the target, and
    // the largest channel max adds nothing.
    double lo = target, hi = std::max(largest, target);
    for (int iteration = 0; iteration < 60; ++iteration) {
      const double mid = 0.5 * (lo + hi);
      (AddedChannels(channel_absmax, mid) > budget ? lo : hi) = mid;
    }
    target = hi;
  }
  // The split counts are what they are; the target reported is the flattened maximum.
  double flattened = 0.0;
  for (int64_t j = 0; j < in; ++j) {
    const int64_t k = SplitCount(channel_absmax[j], target);
    plan.splits[j] = static_cast<int32_t>(k);
    plan.added_channels += k - 1;
    flattened = std::max(flattened, double{channel_absmax[j]} / static_cast<double>(k));
  }
  plan.target = static_cast<float>(flattened);
  return plan;
}

}  // namespace flatfleet::quant
