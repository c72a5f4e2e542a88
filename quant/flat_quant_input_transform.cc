#include "quant/flat_quant_input_transform.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"

namespace flatfleet::quant {
namespace {

bool ValidClip(float ratio) { return ratio > 0.0f && ratio <= 1.0f; }

std::vector<float> ToFloat(const std::vector<double>& values) {
  return std::vector<float>(values.begin(), values.end());
}

}  // namespace

absl::StatusOr<std::shared_ptr<const FlatQuantInputTransform>> FlatQuantInputTransform::Create(
    std::vector<float> scales, int64_t n1, std::vector<float> p1, int64_t n2, std::vector<float> p2,
    float activation_clip_ratio, float weight_clip_ratio) {
  if (n1 < 1 || n2 < 1 || static_cast<int64_t>(scales.size()) != n1 * n2) {
    return absl::InvalidArgumentError(absl::StrCat("flatquant transform: ", scales.size(),
                                                   " scales for n1 = ", n1, ", n2 = ", n2));
  }
  for (size_t k = 0; k < scales.size(); ++k) {
    if (!(scales[k] > 0.0f) || !std::isfinite(scales[k])) {
      return absl::InvalidArgumentError(
          absl::StrCat("flatquant transform: scale ", k, " is ", scales[k]));
    }
  }
  if (!ValidClip(activation_clip_ratio) || !ValidClip(weight_clip_ratio)) {
    return absl::InvalidArgumentError("flatquant transform: clip ratios must be in (0, 1]");
  }
  for (const std::vector<float>* factor : {&p1, &p2}) {
    if (!std::all_of(factor->begin(), factor->end(), [](float v) { return std::isfinite(v); })) {
      return absl::InvalidArgumentError("flatquant transform: non-finite factor entry");
    }
  }
  absl::StatusOr<KroneckerTransform> kronecker = KroneckerTransform::Create(
      std::vector<double>(p1.begin(), p1.end()), n1, std::vector<double>(p2.begin(), p2.end()), n2);
  if (!kronecker.ok()) {
    return absl::InvalidArgumentError(
        absl::StrFormat("flatquant transform: %s", kronecker.status().message()));
  }
  auto transform =
      std::shared_ptr<FlatQuantInputTransform>(new FlatQuantInputTransform(*std::move(kronecker)));
  transform->n1_ = n1;
  transform->n2_ = n2;
  transform->scales_ = std::move(scales);
  transform->p1_ = std::move(p1);
  transform->p2_ = std::move(p2);
  transform->activation_clip_ratio_ = activation_clip_ratio;
  transform->weight_clip_ratio_ = weight_clip_ratio;
  return std::shared_ptr<const FlatQuantInputTransform>(std::move(transform));
}

absl::StatusOr<std::shared_ptr<const FlatQuantInputTransform>> FlatQuantInputTransform::FromParams(
    const FlatQuantParams& params) {
  std::vector<float> scales(params.log_scales.size());
  for (size_t k = 0; k < scales.size(); ++k) {
    scales[k] = static_cast<float>(std::exp(params.log_scales[k]));
  }
  return Create(std::move(scales), params.n1, ToFloat(params.p1), params.n2, ToFloat(params.p2),
                static_cast<float>(params.activation_clip()),
                static_cast<float>(params.weight_clip()));
}

absl::StatusOr<std::shared_ptr<const InputTransform>> FlatQuantInputTransform::Load(
    const TransformState& state) {
  const nlohmann::json& params = state.params;
  for (const char* key : {"n1", "n2"}) {
    if (!params.is_object() || !params.contains(key) || !params[key].is_number_integer()) {
      return absl::InvalidArgumentError(
          absl::StrCat("flatquant transform: params need integer \"", key, "\""));
    }
  }
  for (const char* key : {"activation_clip_ratio", "weight_clip_ratio"}) {
    if (!params.contains(key) || !params[key].is_number()) {
      return absl::InvalidArgumentError(
          absl::StrCat("flatquant transform: params need number \"", key, "\""));
    }
  }
  for (const char* key : {"scales", "p1", "p2"}) {
    if (state.arrays.find(key) == state.arrays.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("flatquant transform: missing array \"", key, "\""));
    }
  }
  const int64_t n1 = params["n1"].get<int64_t>(), n2 = params["n2"].get<int64_t>();
  if (n1 < 1 || n2 < 1 || n1 > (1 << 16) || n2 > (1 << 16)) {
    return absl::InvalidArgumentError("flatquant transform: n1 and n2 must be in 1..65536");
  }
  if (static_cast<int64_t>(state.arrays.at("p1").size()) != n1 * n1 ||
      static_cast<int64_t>(state.arrays.at("p2").size()) != n2 * n2) {
    return absl::InvalidArgumentError(
        "flatquant transform: arrays \"p1\"/\"p2\" must hold n1 * n1 / n2 * n2 values");
  }
  if (params.contains("size") &&
      (!params["size"].is_number_integer() || params["size"].get<int64_t>() != n1 * n2)) {
    return absl::InvalidArgumentError("flatquant transform: \"size\" is not n1 * n2");
  }
  FF_ASSIGN_OR_RETURN(std::shared_ptr<const FlatQuantInputTransform> transform,
                      Create(state.arrays.at("scales"), n1, state.arrays.at("p1"), n2,
                             state.arrays.at("p2"), params["activation_clip_ratio"].get<float>(),
                             params["weight_clip_ratio"].get<float>()));
  return std::shared_ptr<const InputTransform>(std::move(transform));
}

void FlatQuantInputTransform::ApplyToActivations(std::span<const float> rows, int64_t m,
                                                 std::span<float> out) const {
  const int64_t n = in_features();
  for (int64_t i = 0; i < m * n; ++i) out[i] = rows[i] / scales_[i % n];
  kronecker_.ApplyToActivationRows(out.first(m * n), m);
}

void FlatQuantInputTransform::TransformWeight(std::span<const float> weight, int64_t n_rows,
                                              std::span<float> out) const {
  const int64_t n = in_features();
  for (int64_t i = 0; i < n_rows * n; ++i) out[i] = weight[i] * scales_[i % n];
  kronecker_.FoldIntoWeightRows(out.first(n_rows * n), n_rows);
}

TransformState FlatQuantInputTransform::Save() const {
  TransformState state;
  state.kind = std::string(kKind);
  state.params = {{"size", n1_ * n2_},
                  {"n1", n1_},
                  {"n2", n2_},
                  {"activation_clip_ratio", activation_clip_ratio_},
                  {"weight_clip_ratio", weight_clip_ratio_}};
  state.arrays["scales"] = scales_;
  state.arrays["p1"] = p1_;
  state.arrays["p2"] = p2_;
  return state;
}

}  // namespace flatfleet::quant
