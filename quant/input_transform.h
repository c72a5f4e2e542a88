// An online change of a linear layer's input basis, the common shape of the methods that make
// activations easier to quantize:
//
//   x -> T(x)  ([m, in_features] -> [m, out_features]),   W -> T_w(W)  ([n, in] -> [n, out])
//   with T(x) T_w(W)^T = x W^T in exact arithmetic,
//
// e.g. a randomized Hadamard rotation (QuaRot; out = in), SmoothQuant's per-channel scaling,
// FlattenQuant's channel splitting (out > in) or FlatQuant's Kronecker affine transform. A layer
// applies a chain of them (InputTransformChain) before quantizing its activations; the weight is
// rewritten by the same chain once, when the layer is prepared.
//
// A transform saves itself as a TransformState (kind, scalar parameters, named float arrays) so
// that a quantized checkpoint can store it and LoadInputTransform can rebuild it.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace flatfleet::quant {

struct TransformState {
  std::string kind;
  nlohmann::json params = nlohmann::json::object();
  std::map<std::string, std::vector<float>> arrays;
};

class InputTransform {
 public:
  virtual ~InputTransform() = default;

  virtual std::string_view kind() const = 0;
  virtual int64_t in_features() const = 0;
  virtual int64_t out_features() const = 0;

  // out [m, out_features] = T(rows [m, in_features]).
  virtual void ApplyToActivations(std::span<const float> rows, int64_t m,
                                  std::span<float> out) const = 0;
  // out [n, out_features] = T_w(weight [n, in_features]).
  virtual void TransformWeight(std::span<const float> weight, int64_t n,
                               std::span<float> out) const = 0;

  virtual TransformState Save() const = 0;
};

// Rebuilds a saved transform; errors name the kind and the missing or malformed field.
absl::StatusOr<std::shared_ptr<const InputTransform>> LoadInputTransform(
    const TransformState& state);

// Transforms applied in order; the empty chain is the identity.
class InputTransformChain {
 public:
  InputTransformChain() = default;
  // Errors unless each transform's in_features equals the previous one's out_features.
  static absl::StatusOr<InputTransformChain> Create(
      std::vector<std::shared_ptr<const InputTransform>> transforms);

  bool empty() const { return transforms_.empty(); }
  const std::vector<std::shared_ptr<const InputTransform>>& transforms() const {
    return transforms_;
  }
  // Width of the transformed activations (`in_features` for the empty chain).
  int64_t OutFeatures(int64_t in_features) const;

  // [m, in] -> [m, OutFeatures(in)].
  std::vector<float> ApplyToActivations(std::span<const float> rows, int64_t m) const;
  // [n, in] -> [n, OutFeatures(in)].
  std::vector<float> TransformWeight(std::span<const float> weight, int64_t n) const;

 private:
  std::vector<std::shared_ptr<const InputTransform>> transforms_;
};

}  // namespace flatfleet::quant
