// Weights of any architecture generated from a seed, for benchmarks of real model shapes
// (`flatfleet bench --random-weights`): linear layers go through Backend::PrepareRandomLinear,
// which a GPU fills in place (a 70B model needs no host copy); norms, the embedding table and
// everything else come as host float32 from the same counter-based hash (kernels/random_hash.h).
// With a quantized format, every linear but the LM head and the MoE routers (which quantization
// keeps in float: quant/float_linear_filter.h) is a random quantized layer
// (Backend::PrepareRandomQuantizedLinear); quantized MoE experts have no kernel yet.
#pragma once

#include <cstdint>
#include <optional>

#include "kernels/backend.h"
#include "worker/model/weight_source.h"

namespace flatfleet::engine {

class SeededWeightSource final : public WeightSource {
 public:
  // Linear layers uniform with `stddev`, norm scales in [0.9, 1.1), embeddings with stddev 1.
  explicit SeededWeightSource(uint64_t seed, float stddev = 0.02f,
                              std::optional<kernels::RandomQuantizedFormat> format = std::nullopt)
      : seed_(seed), stddev_(stddev), format_(format) {}

  bool Has(std::string_view name) const override { return true; }
  absl::StatusOr<Tensor> Load(std::string_view name,
                              const std::vector<int64_t>& shape) const override;
  absl::StatusOr<std::unique_ptr<kernels::LinearWeight>> LoadPreparedLinear(
      const LinearLayerRequest& request, kernels::Backend& backend) const override;

 private:
  uint64_t SeedOf(std::string_view name) const;

  uint64_t seed_;
  float stddev_;
  std::optional<kernels::RandomQuantizedFormat> format_;
};

}  // namespace flatfleet::engine
