// Which linear layers stay in float32 under a quantization recipe. The model keeps the LM head
// (its logits are the output we compare; quantizing it is a separate, later decision) and the
// MoE router (a quantized router changes which experts run, a discrete error) in float;
// embeddings are a table lookup, never a Linear, and stay float anyway.
//
// Layers are recognised by the name the model prepares them under (kernels::LinearSource::name:
// "lm_head", "model.layers.N.block_sparse_moe.gate"), so a tensor-parallel slice of the LM head
// stays float like the whole one and no weight bytes are compared.
#pragma once

#include <functional>
#include <string_view>

namespace flatfleet::quant {

// true: keep the linear prepared under this name in float32.
using KeepFloatFilter = std::function<bool(std::string_view layer_name)>;

// The LM head (also when tied to the embedding) and every MoE router.
bool IsKeptFloatByDefault(std::string_view layer_name);
KeepFloatFilter KeepFloatByName();

}  // namespace flatfleet::quant
