#include "quant/activation_calibration.h"

#include <algorithm>
#include <cmath>

namespace flatfleet::quant {

void ActivationCalibration::Record(std::span<const float> rows, int64_t num_rows, int64_t cols) {
  if (channel_absmax.empty()) channel_absmax.assign(cols, 0.0f);
  for (int64_t r = 0; r < num_rows; ++r) {
    const float* row = rows.data() + r * cols;
    for (int64_t k = 0; k < cols; ++k) {
      channel_absmax[k] = std::max(channel_absmax[k], std::fabs(row[k]));
    }
  }
  rows_seen += num_rows;
}

}  // namespace flatfleet::quant
