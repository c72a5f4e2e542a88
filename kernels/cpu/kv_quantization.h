// INT8 KV-cache numerics: each cached key or value row is quantized per KV head,
//   scale = fp16(max|x| / 127)   (round to nearest even; 0 for an all-zero head)
//   code  = clamp(round_half_away(x / float(scale)), -127, 127)      (0 when scale is 0)
// and read back as float(scale) * code. The error per element is at most float(scale) / 2 plus
// the FP16 rounding of the scale (relative 2^-11 of max|x|), i.e. about max|x| / 254. GPU
// kernels must produce the same codes and scales.
#pragma once

#include <cstdint>

namespace flatfleet::kernels::cpu {

// rows: [count][num_kv_heads * head_dim] floats; codes: same shape; scales: [count][num_kv_heads]
// FP16 bits.
void QuantizeKvRows(const float* rows, int64_t count, int64_t num_kv_heads, int64_t head_dim,
                    int8_t* codes, uint16_t* scales);

}  // namespace flatfleet::kernels::cpu
