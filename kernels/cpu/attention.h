// Causal multi-head attention (MHA/GQA/MQA) of a batch of sequences over their cached keys and
// values, in float32 with a numerically stable softmax.
#pragma once

#include <span>

#include "kernels/backend.h"

namespace flatfleet::kernels::cpu {

void CausalAttention(const float* q, std::span<const AttentionSequence> sequences,
                     const AttentionShape& shape, float* out);

}  // namespace flatfleet::kernels::cpu
