#include "worker/collectives/int8_blocks.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_format.h"

namespace flatfleet::collectives {
namespace {

// The largest magnitude in the block, or NaN if any value is NaN or infinite.
float BlockAbsMax(absl::Span<const float> block) {
  float absmax = 0.0f;
  bool finite = true;
  for (float v : block) {
    absmax = std::max(absmax, std::fabs(v));
    finite &= std::isfinite(v);
  }
  return finite ? absmax : std::numeric_limits<float>::quiet_NaN();
}

}  // namespace

absl::Status QuantizeBlocks(absl::Span<const float> values, int block_size,
                            absl::Span<int8_t> codes, absl::Span<float> scales) {
  if (block_size <= 0) return absl::InvalidArgumentError("block_size must be positive");
  const int64_t n = values.size();
  if (codes.size() != values.size() || scales.size() != NumBlocks(n, block_size)) {
    return absl::InvalidArgumentError(
        absl::StrFormat("QuantizeBlocks: %d values need %d codes and %d scales, got %d and %d", n,
                        n, NumBlocks(n, block_size), codes.size(), scales.size()));
  }
  for (int64_t block = 0; block < static_cast<int64_t>(scales.size()); ++block) {
    const int64_t begin = block * block_size;
    const int64_t end = std::min<int64_t>(begin + block_size, n);
    const float absmax = BlockAbsMax(values.subspan(begin, end - begin));
    if (!std::isfinite(absmax)) {
      return absl::InvalidArgumentError(
          absl::StrFormat("QuantizeBlocks: non-finite value in block %d", block));
    }
    const float scale = absmax / kInt8MaxCode;
    scales[block] = scale;
    if (scale == 0.0f) {  // all zeros (or absmax below 127 * the smallest subnormal)
      std::fill(codes.begin() + begin, codes.begin() + end, int8_t{0});
      continue;
    }
    for (int64_t i = begin; i < end; ++i) {
      const float code = std::clamp(std::nearbyint(values[i] / scale), -kInt8MaxCode, kInt8MaxCode);
      codes[i] = static_cast<int8_t>(code);
    }
  }
  return absl::OkStatus();
}

void DequantizeBlocks(absl::Span<const int8_t> codes, absl::Span<const float> scales,
                      int block_size, absl::Span<float> out) {
  for (size_t block = 0; block < scales.size(); ++block) {
    const size_t begin = block * block_size;
    const size_t end = std::min(begin + block_size, codes.size());
    const float scale = scales[block];
    for (size_t i = begin; i < end; ++i) out[i] = static_cast<float>(codes[i]) * scale;
  }
}

void AccumulateDequantizedBlocks(absl::Span<const int8_t> codes, absl::Span<const float> scales,
                                 int block_size, absl::Span<float> sum) {
  for (size_t block = 0; block < scales.size(); ++block) {
    const size_t begin = block * block_size;
    const size_t end = std::min(begin + block_size, codes.size());
    const float scale = scales[block];
    for (size_t i = begin; i < end; ++i) sum[i] = sum[i] + static_cast<float>(codes[i]) * scale;
  }
}

}  // namespace flatfleet::collectives
