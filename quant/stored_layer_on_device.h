// A stored quantized layer prepared on a device backend (kernels::Backend::PrepareQuantizedLinear,
// the GPU's integer GEMMs). The layers that run there: float group scales or Integer Scale's
// integer group multipliers (4-bit groups), 8-bit per-channel or 4-bit weights, or 2/3-bit ones
// (ABQ's balanced codes included) as INT4 operands of the W4A8 GEMMs, symmetric
// activations of 2..8 bits (W4A4's INT4 codes included) per token or with a static per-tensor
// scale, and at most one online transform that is SmoothQuant's smoothing, FlattenQuant's channel
// split, the randomized Hadamard rotation or FlatQuant's Kronecker transform; not MoE experts. Any
// other layer (chains of transforms, asymmetric activations, QUIK, 2/3-bit or balanced weights) is
// refused with an error naming it and the feature, so a checkpoint loads on the GPU whole or not at
// all (the CPU integer reference runs every recipe: --device cpu).
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
