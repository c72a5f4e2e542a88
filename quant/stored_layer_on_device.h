// A stored quantized layer prepared on a device backend (kernels::Backend::PrepareQuantizedLinear,
// the GPU's integer GEMMs). The layers that run there are the GEMMs' plain form: no online input
// transform, per-token dynamic symmetric INT8 activations, float group scales, 8-bit per-channel
// or 4-bit weights, not MoE experts. Any other layer is refused with an error naming it and the
// feature, so a checkpoint loads on the GPU whole or not at all (the CPU integer reference runs
// every recipe: --device cpu).
#pragma once

#include <memory>
#include <string_view>

#include "absl/status/statusor.h"
#include "kernels/backend.h"
#include "quant/quantized_linear.h"

namespace flatfleet::quant {

// OK when `layer` has the form above; otherwise FailedPrecondition naming `name` and what the GPU
// lacks for it.
absl::Status CheckRunsOnDevice(std::string_view name, const QuantizedLinear& layer);

absl::StatusOr<std::unique_ptr<kernels::LinearWeight>> PrepareStoredLayerOnDevice(
    std::string_view name, const QuantizedLinear& layer, kernels::Backend& backend);

}  // namespace flatfleet::quant
