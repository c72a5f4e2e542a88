// Weights of any architecture generated from a seed, for benchmarks of real model shapes
// (`flatfleet bench --random-weights`): linear layers go through Backend::PrepareRandomLinear,
// which a GPU fills in place (a 70B model needs no host copy); norms, the embedding table and
// everything else come as host float32 from the same counter-based hash (kernels/random_hash.h).
#pragma once

#include <cstdint>

#include "kernels/backend.h"
#include "worker/model/weight_source.h"

namespace flatfleet::engine {

class SeededWeightSource final : public WeightSource {
 public:
  // Linear layers uniform with `stddev`, norm scales in [0.9, 1.1), embeddings with stddev 1.
  SeededWeightSource(kernels::Backend& backend, uint64_t seed, float stddev = 0.02f)
      : backend_(backend), seed_(seed), stddev_(stddev) {}

  bool Has(std::string_view name) const override { return true; }
  absl::StatusOr<Tensor> Load(std::string_view name,
                              const std::vector<int64_t>& shape) const override;
  absl::StatusOr<std::unique_ptr<kernels::LinearWeight>> LoadPreparedLinear(
      const LinearLayerRequest& request) const override;

 private:
  uint64_t SeedOf(std::string_view name) const;

  kernels::Backend& backend_;
  uint64_t seed_;
  float stddev_;
};

}  // namespace flatfleet::engine
