// Symmetric per-block INT8 quantization, the number format of the compressed all-reduce.
//
// A float vector is cut into blocks of `block_size` elements (the last may be shorter). Each block
// stores scale = absmax / 127 (float division) and codes q = clamp(nearbyint(x / scale), -127,
// 127) with round-half-to-even; an all-zero block has scale 0 and codes 0. Dequantization is
// float(q) * scale, one rounding. So |x - float(q) * scale| <= scale / 2 (up to float rounding).
// These rules are the bit-exact contract any backend (CPU or CUDA) must follow.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"

namespace flatfleet::collectives {

inline constexpr float kInt8MaxCode = 127.0f;

inline int64_t NumBlocks(int64_t num_elements, int block_size) {
  return (num_elements + block_size - 1) / block_size;
}

// Codes and scales for a whole vector; codes.size() is the number of elements.
struct Int8Blocks {
  std::vector<int8_t> codes;
  std::vector<float> scales;

  friend bool operator==(const Int8Blocks&, const Int8Blocks&) = default;
};

// Quantizes `values` (all finite) into codes (same length) and scales (NumBlocks entries).
// InvalidArgument if a value is NaN or infinite, or the output sizes do not match.
absl::Status QuantizeBlocks(absl::Span<const float> values, int block_size,
                            absl::Span<int8_t> codes, absl::Span<float> scales);

// out[i] = float(codes[i]) * scales[i / block_size].
void DequantizeBlocks(absl::Span<const int8_t> codes, absl::Span<const float> scales,
                      int block_size, absl::Span<float> out);

// sum[i] = sum[i] + float(codes[i]) * scales[i / block_size], each operation rounded separately.
void AccumulateDequantizedBlocks(absl::Span<const int8_t> codes, absl::Span<const float> scales,
                                 int block_size, absl::Span<float> sum);

}  // namespace flatfleet::collectives
