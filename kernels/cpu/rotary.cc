#include "kernels/cpu/rotary.h"

#include <cmath>
#include <vector>

namespace flatfleet::kernels::cpu {

void ApplyRotary(float* x, int64_t num_heads, int64_t head_dim, std::span<const int64_t> positions,
                 std::span<const float> inv_freq) {
  const int64_t half = head_dim / 2;
  std::vector<float> cos_values(half);
  std::vector<float> sin_values(half);
  for (size_t r = 0; r < positions.size(); ++r) {
    // The angle is rounded to float32 first, as transformers computes it.
    for (int64_t i = 0; i < half; ++i) {
      const float angle = static_cast<float>(positions[r]) * inv_freq[i];
      cos_values[i] = static_cast<float>(std::cos(static_cast<double>(angle)));
      sin_values[i] = static_cast<float>(std::sin(static_cast<double>(angle)));
    }
    float* row = x + static_cast<int64_t>(r) * num_heads * head_dim;
    for (int64_t h = 0; h < num_heads; ++h) {
      float* v = row + h * head_dim;
      for (int64_t i = 0; i < half; ++i) {
        const float a = v[i];
        const float b = v[i + half];
        // Explicit fused multiply-adds: the bits must not depend on whether the compiler
        // contracts (it does under -march=x86-64-v3), so that GPU kernels can match them; the
        // difference matters where the two products nearly cancel.
        v[i] = std::fma(a, cos_values[i], -(b * sin_values[i]));
        v[i + half] = std::fma(b, cos_values[i], a * sin_values[i]);
      }
    }
  }
}

}  // namespace flatfleet::kernels::cpu
