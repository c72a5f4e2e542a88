// The randomized Hadamard rotation (kernels/cpu/quant/hadamard.h) as an InputTransform: x -> x Q,
// W -> W Q (Q orthogonal). Saved as {"size", "seed"}: the rotation is rebuilt from its seed.
#pragma once

#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "kernels/cpu/quant/hadamard.h"
#include "quant/input_transform.h"

namespace flatfleet::quant {

class HadamardInputTransform final : public InputTransform {
 public:
  static constexpr std::string_view kKind = "hadamard";

  static absl::StatusOr<std::shared_ptr<const HadamardInputTransform>> Create(int64_t size,
                                                                              uint64_t seed);
  static absl::StatusOr<std::shared_ptr<const InputTransform>> Load(const TransformState& state);

  std::string_view kind() const override { return kKind; }
  int64_t in_features() const override { return rotation_.size(); }
  int64_t out_features() const override { return rotation_.size(); }
  void ApplyToActivations(std::span<const float> rows, int64_t m,
                          std::span<float> out) const override;
  void TransformWeight(std::span<const float> weight, int64_t n,
                       std::span<float> out) const override;
  TransformState Save() const override;

  const RandomizedHadamard& rotation() const { return rotation_; }

 private:
  HadamardInputTransform(RandomizedHadamard rotation, uint64_t seed)
      : rotation_(std::move(rotation)), seed_(seed) {}

  RandomizedHadamard rotation_;
  uint64_t seed_;
};

}  // namespace flatfleet::quant
