#include "quant/hadamard_input_transform.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace flatfleet::quant {

absl::StatusOr<std::shared_ptr<const HadamardInputTransform>> HadamardInputTransform::Create(
    int64_t size, uint64_t seed) {
  FF_ASSIGN_OR_RETURN(RandomizedHadamard rotation, RandomizedHadamard::Create(size, seed));
  return std::shared_ptr<const HadamardInputTransform>(
      new HadamardInputTransform(std::move(rotation), seed));
}

absl::StatusOr<std::shared_ptr<const InputTransform>> HadamardInputTransform::Load(
    const TransformState& state) {
  const nlohmann::json& params = state.params;
  if (!params.is_object() || !params.contains("size") || !params["size"].is_number_integer() ||
      !params.contains("seed") || !params["seed"].is_number_unsigned()) {
    return absl::InvalidArgumentError(
        "hadamard transform: params need integer \"size\" and unsigned \"seed\"");
  }
  FF_ASSIGN_OR_RETURN(std::shared_ptr<const HadamardInputTransform> transform,
                      Create(params["size"].get<int64_t>(), params["seed"].get<uint64_t>()));
  return std::shared_ptr<const InputTransform>(std::move(transform));
}

void HadamardInputTransform::ApplyToActivations(std::span<const float> rows, int64_t m,
                                                std::span<float> out) const {
  std::copy(rows.begin(), rows.end(), out.begin());
  rotation_.ApplyToActivationRows(out.first(rows.size()), m);
}

void HadamardInputTransform::TransformWeight(std::span<const float> weight, int64_t n,
                                             std::span<float> out) const {
  std::copy(weight.begin(), weight.end(), out.begin());
  rotation_.FoldIntoWeightRows(out.first(weight.size()), n);
}

TransformState HadamardInputTransform::Save() const {
  TransformState state;
  state.kind = std::string(kKind);
  state.params = {{"size", rotation_.size()}, {"seed", seed_}};
  return state;
}

}  // namespace flatfleet::quant
