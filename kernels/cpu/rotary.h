// Rotary position embedding with Hugging Face's rotate_half layout: dimension i pairs with
// i + head_dim / 2, and both use the angle position * inv_freq[i].
#pragma once

#include <cstdint>
#include <span>

namespace flatfleet::kernels::cpu {

// x is [positions.size(), num_heads * head_dim], rotated in place.
void ApplyRotary(float* x, int64_t num_heads, int64_t head_dim, std::span<const int64_t> positions,
                 std::span<const float> inv_freq);

}  // namespace flatfleet::kernels::cpu
