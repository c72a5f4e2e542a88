// Which linear layers stay in float32 under a quantization recipe. The model keeps the LM head
// (its logits are the output we compare; quantizing it is a separate, later decision) and the
// MoE router (a quantized router changes which experts run, a discrete error) in float;
// embeddings are a table lookup, never a Linear, and stay float anyway.
//
// kernels::Backend::PrepareLinear does not say which layer a weight belongs to, and shapes are
// ambiguous (llama-tiny's fused q|k|v is [512, 256] like its LM head), so the filter recognises
// those layers by content: a weight equal in shape and every bit to one of the given tensors.
#pragma once

#include <functional>
#include <vector>

#include "common/tensor.h"

namespace flatfleet::quant {

// true: keep the linear with this [out, in] weight in float32.
using KeepFloatFilter = std::function<bool(const Tensor& weight)>;

KeepFloatFilter KeepWeightsInFloat(std::vector<Tensor> float_weights);

}  // namespace flatfleet::quant
