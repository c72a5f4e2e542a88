// Sparse MoE (Mixtral) composed from a host backend's own Linear, so every host backend (float32,
// quantized) runs the experts through its own layers.
#pragma once

#include <cstdint>
#include <functional>
#include <span>

#include "absl/status/status.h"
#include "kernels/backend.h"

namespace flatfleet::kernels::cpu {

using HostLinearFn = std::function<absl::Status(
    const LinearWeight&, const runtime::ConstTensorView&, const runtime::TensorView&)>;

// Per row of x: softmax over router_logits, keep the top_k experts, renormalise their weights,
// and write the weighted sum of their outputs to out. Experts run one after another on the rows
// routed to them and add in expert order, as transformers does. Host float32, dense; shapes are
// checked by callers.
absl::Status ComposeSparseMoe(const HostLinearFn& linear, const runtime::ConstTensorView& x,
                              const runtime::ConstTensorView& router_logits,
                              std::span<const ExpertWeights> experts, int64_t top_k,
                              const runtime::TensorView& out);

}  // namespace flatfleet::kernels::cpu
