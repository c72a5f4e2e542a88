// What a linear layer's inputs looked like on calibration data: per input channel, the largest
// |x| seen (after the layer's online transform, i.e. what gets quantized). QUIK picks its FP16
// outlier channels from it; per-tensor static activation scales are its maximum.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace flatfleet::quant {

struct ActivationCalibration {
  std::vector<float> channel_absmax;  // [in_features]
  int64_t rows_seen = 0;

  // Folds rows ([num_rows, cols], row-major) into the statistics.
  void Record(std::span<const float> rows, int64_t num_rows, int64_t cols);
  bool empty() const { return rows_seen == 0; }
};

}  // namespace flatfleet::quant
