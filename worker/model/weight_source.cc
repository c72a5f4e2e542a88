#include "worker/model/weight_source.h"

#include <cmath>
#include <numbers>
#include <random>

namespace flatfleet::engine {

absl::StatusOr<Tensor> RandomWeightSource::Load(std::string_view name,
                                                const std::vector<int64_t>& shape) const {
  // FNV-1a of the name mixed with the seed: independent of the order tensors are loaded in.
  uint64_t hash = 1469598103934665603ull ^ seed_;
  for (char c : name) hash = (hash ^ static_cast<unsigned char>(c)) * 1099511628211ull;
  std::mt19937_64 rng(hash);
  Tensor tensor(shape);
  const bool is_norm = name.find("norm") != std::string_view::npos;
  const bool is_embedding = name.find("embed_tokens") != std::string_view::npos;
  constexpr double kTwoPow53 = 9007199254740992.0;
  auto uniform = [&] { return static_cast<double>(rng() >> 11) / kTwoPow53; };
  for (float& value : tensor.span()) {
    if (is_norm) {
      value = static_cast<float>(0.5 + uniform());
    } else {
      // Box-Muller from two uniforms: reproducible across standard libraries.
      const double u1 = 1.0 - uniform();
      const double u2 = uniform();
      const double normal = std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * std::numbers::pi * u2);
      value = static_cast<float>(normal * (is_embedding ? 1.0 : matrix_stddev_));
    }
  }
  return tensor;
}

}  // namespace flatfleet::engine
