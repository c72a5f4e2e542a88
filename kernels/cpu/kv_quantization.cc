#include "kernels/cpu/kv_quantization.h"

#include <algorithm>
#include <cmath>

#include "common/dtype.h"

namespace flatfleet::kernels::cpu {

void QuantizeKvRows(const float* rows, int64_t count, int64_t num_kv_heads, int64_t head_dim,
                    int8_t* codes, uint16_t* scales) {
  for (int64_t r = 0; r < count; ++r) {
    for (int64_t h = 0; h < num_kv_heads; ++h) {
      const int64_t offset = (r * num_kv_heads + h) * head_dim;
      const float* x = rows + offset;
      float absmax = 0.0f;
      for (int64_t d = 0; d < head_dim; ++d) absmax = std::max(absmax, std::fabs(x[d]));
      const uint16_t scale_bits = FloatToHalf(absmax / 127.0f);
      const float scale = HalfToFloat(scale_bits);
      scales[r * num_kv_heads + h] = scale_bits;
      int8_t* out = codes + offset;
      for (int64_t d = 0; d < head_dim; ++d) {
        const float q = scale > 0.0f ? std::round(x[d] / scale) : 0.0f;
        out[d] = static_cast<int8_t>(std::clamp(q, -127.0f, 127.0f));
      }
    }
  }
}

}  // namespace flatfleet::kernels::cpu
