#include "worker/model/seeded_weight_source.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "kernels/random_hash.h"

namespace flatfleet::engine {

uint64_t SeededWeightSource::SeedOf(std::string_view name) const {
  uint64_t hash = 1469598103934665603ull ^ seed_;  // FNV-1a: independent of the load order
  for (char c : name) hash = (hash ^ static_cast<unsigned char>(c)) * 1099511628211ull;
  return hash;
}

absl::StatusOr<Tensor> SeededWeightSource::Load(std::string_view name,
                                                const std::vector<int64_t>& shape) const {
  Tensor tensor(shape);
  const uint64_t seed = SeedOf(name);
  const bool norm = name.find("norm") != std::string_view::npos;
  const bool embedding = name.find("embed_tokens") != std::string_view::npos;
  const float scale = norm ? 0.1f : (embedding ? std::sqrt(3.0f) : stddev_ * std::sqrt(3.0f));
  float* values = tensor.data();
  for (int64_t i = 0; i < tensor.size(); ++i) {
    const float u = kernels::HashToSymmetricUniform(seed, i);
    values[i] = norm ? 1.0f + scale * u : scale * u;
  }
  return tensor;
}

absl::StatusOr<std::unique_ptr<kernels::LinearWeight>> SeededWeightSource::LoadPreparedLinear(
    const LinearLayerRequest& request, kernels::Backend& backend) const {
  if (request.with_bias) return std::unique_ptr<kernels::LinearWeight>();  // the float path
  int64_t out = 0;
  for (const LinearLayerRequest::Part& part : request.parts) out += part.row_end - part.row_begin;
  const int64_t in = request.parallel == LinearLayerRequest::Parallel::kRow
                         ? request.column_end - request.column_begin
                         : request.in_features;
  const std::string_view name = request.name;
  const bool keeps_float = name == "lm_head" || name.ends_with("block_sparse_moe.gate");
  if (!format_.has_value() || keeps_float) {
    return backend.PrepareRandomLinear(name, out, in, SeedOf(name), stddev_);
  }
  if (name.find(".experts.") != std::string_view::npos) {
    return absl::UnimplementedError(absl::StrCat(
        "layer '", std::string(name),
        "': quantized MoE experts have no GPU kernel yet (the grouped GEMM is bf16); bench "
        "Mixtral with --recipe bf16"));
  }
  return backend.PrepareRandomQuantizedLinear(name, out, in, SeedOf(name), stddev_, *format_);
}

}  // namespace flatfleet::engine
