#include "quant/input_transform.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "quant/flat_quant_input_transform.h"
#include "quant/flatten_input_transform.h"
#include "quant/hadamard_input_transform.h"
#include "quant/smooth_input_transform.h"

namespace flatfleet::quant {

absl::StatusOr<std::shared_ptr<const InputTransform>> LoadInputTransform(
    const TransformState& state) {
  // One line per kind: new transforms register here.
  if (state.kind == HadamardInputTransform::kKind) return HadamardInputTransform::Load(state);
  if (state.kind == SmoothInputTransform::kKind) return SmoothInputTransform::Load(state);
  if (state.kind == FlattenInputTransform::kKind) return FlattenInputTransform::Load(state);
  if (state.kind == FlatQuantInputTransform::kKind) return FlatQuantInputTransform::Load(state);
  return absl::InvalidArgumentError(
      absl::StrFormat("unknown input transform kind \"%s\"", state.kind));
}

absl::StatusOr<InputTransformChain> InputTransformChain::Create(
    std::vector<std::shared_ptr<const InputTransform>> transforms) {
  for (size_t i = 0; i < transforms.size(); ++i) {
    if (transforms[i] == nullptr) return absl::InvalidArgumentError("null input transform");
    if (i > 0 && transforms[i]->in_features() != transforms[i - 1]->out_features()) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "input transform %d (%s) takes %d features but transform %d (%s) makes %d", i,
          transforms[i]->kind(), transforms[i]->in_features(), i - 1, transforms[i - 1]->kind(),
          transforms[i - 1]->out_features()));
    }
  }
  InputTransformChain chain;
  chain.transforms_ = std::move(transforms);
  return chain;
}

int64_t InputTransformChain::OutFeatures(int64_t in_features) const {
  return transforms_.empty() ? in_features : transforms_.back()->out_features();
}

std::vector<float> InputTransformChain::ApplyToActivations(std::span<const float> rows,
                                                           int64_t m) const {
  std::vector<float> current(rows.begin(), rows.end());
  for (const auto& transform : transforms_) {
    std::vector<float> next(static_cast<size_t>(m * transform->out_features()));
    transform->ApplyToActivations(current, m, next);
    current = std::move(next);
  }
  return current;
}

std::vector<float> InputTransformChain::TransformWeight(std::span<const float> weight,
                                                        int64_t n) const {
  if (transforms_.empty()) return std::vector<float>(weight.begin(), weight.end());
  // The first transform reads `weight` itself: one [n, k] copy less at the peak.
  std::vector<float> current;
  for (size_t t = 0; t < transforms_.size(); ++t) {
    std::vector<float> next(static_cast<size_t>(n * transforms_[t]->out_features()));
    transforms_[t]->TransformWeight(t == 0 ? weight : std::span<const float>(current), n, next);
    current = std::move(next);
  }
  return current;
}

}  // namespace flatfleet::quant
