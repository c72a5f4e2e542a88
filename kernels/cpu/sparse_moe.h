// Sparse MoE (Mixtral) composed from a backend's own ops, so every host backend (float32,
// quantized) runs the experts through its own Linear.
#pragma once

#include <cstdint>
#include <span>

#include "common/tensor.h"
#include "kernels/backend.h"

namespace flatfleet::kernels::cpu {

// Per row of x: softmax over router_logits, keep the top_k experts, renormalise their weights,
// and write the weighted sum of their outputs to out. Experts run one after another on the rows
// routed to them and add in expert order, as transformers does. Shapes are checked by callers.
void ComposeSparseMoe(Backend& backend, const Tensor& x, const Tensor& router_logits,
                      std::span<const ExpertWeights> experts, int64_t top_k, Tensor& out);

}  // namespace flatfleet::kernels::cpu
