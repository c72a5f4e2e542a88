#include "quant/smooth_input_transform.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_format.h"
#include "common/status_macros.h"

namespace flatfleet::quant {

absl::StatusOr<std::shared_ptr<const SmoothInputTransform>> SmoothInputTransform::Create(
    std::vector<float> scales, double alpha) {
  if (scales.empty()) return absl::InvalidArgumentError("smooth transform: no scales");
  for (size_t j = 0; j < scales.size(); ++j) {
    if (!(scales[j] > 0.0f) || !std::isfinite(scales[j])) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "smooth transform: scale %d is %g, not positive and finite", j, scales[j]));
    }
  }
  if (!(alpha >= 0.0 && alpha <= 1.0)) {
    return absl::InvalidArgumentError(
        absl::StrFormat("smooth transform: alpha %g is not in [0, 1]", alpha));
  }
  return std::shared_ptr<const SmoothInputTransform>(
      new SmoothInputTransform(std::move(scales), alpha));
}

absl::StatusOr<std::shared_ptr<const InputTransform>> SmoothInputTransform::Load(
    const TransformState& state) {
  const nlohmann::json& params = state.params;
  if (!params.is_object() || !params.contains("size") || !params["size"].is_number_integer() ||
      !params.contains("alpha") || !params["alpha"].is_number()) {
    return absl::InvalidArgumentError(
        "smooth transform: params need integer \"size\" and number \"alpha\"");
  }
  auto scales = state.arrays.find("scales");
  if (scales == state.arrays.end()) {
    return absl::InvalidArgumentError("smooth transform: missing array \"scales\"");
  }
  const int64_t size = params["size"].get<int64_t>();
  if (static_cast<int64_t>(scales->second.size()) != size) {
    return absl::InvalidArgumentError(
        absl::StrFormat("smooth transform: array \"scales\" has %d values, size is %d",
                        scales->second.size(), size));
  }
  FF_ASSIGN_OR_RETURN(std::shared_ptr<const SmoothInputTransform> transform,
                      Create(scales->second, params["alpha"].get<double>()));
  return std::shared_ptr<const InputTransform>(std::move(transform));
}

void SmoothInputTransform::ApplyToActivations(std::span<const float> rows, int64_t m,
                                              std::span<float> out) const {
  const int64_t k = in_features();
  for (int64_t r = 0; r < m; ++r) {
    for (int64_t j = 0; j < k; ++j) out[r * k + j] = rows[r * k + j] / scales_[j];
  }
}

void SmoothInputTransform::TransformWeight(std::span<const float> weight, int64_t n,
                                           std::span<float> out) const {
  const int64_t k = in_features();
  for (int64_t r = 0; r < n; ++r) {
    for (int64_t j = 0; j < k; ++j) out[r * k + j] = weight[r * k + j] * scales_[j];
  }
}

TransformState SmoothInputTransform::Save() const {
  TransformState state;
  state.kind = std::string(kKind);
  state.params = {{"size", in_features()}, {"alpha", alpha_}};
  state.arrays["scales"] = scales_;
  return state;
}

std::vector<float> SmoothingScales(std::span<const float> activation_channel_absmax,
                                   std::span<const float> weight, int64_t n, double alpha) {
  const int64_t k = static_cast<int64_t>(activation_channel_absmax.size());
  std::vector<double> weight_absmax(k, 0.0);
  for (int64_t r = 0; r < n; ++r) {
    for (int64_t j = 0; j < k; ++j) {
      weight_absmax[j] = std::max(weight_absmax[j], std::fabs(double{weight[r * k + j]}));
    }
  }
  std::vector<float> scales(k, 1.0f);
  for (int64_t j = 0; j < k; ++j) {
    const double x = activation_channel_absmax[j];
    const double w = weight_absmax[j];
    if (!(x > 0.0) || !(w > 0.0)) continue;
    const double s = std::pow(x, alpha) / std::pow(w, 1.0 - alpha);
    scales[j] = static_cast<float>(std::clamp(s, 1e-5, 1e5));
  }
  return scales;
}

}  // namespace flatfleet::quant
