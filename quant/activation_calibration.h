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

  // A bounded uniform sample (reservoir, Algorithm R with a fixed per-row seed) of the layer's
  // raw, pre-transform input rows, [rows, in_features] row-major: the data FlatQuant trains its
  // transform on and ABQ's output correction is fitted on.
  static constexpr int64_t kMaxRawSamples = 256;
  std::vector<float> raw_samples;
  int64_t raw_rows_seen = 0;

  // Folds rows ([num_rows, cols], row-major) into the statistics.
  void Record(std::span<const float> rows, int64_t num_rows, int64_t cols);
  // Offers raw input rows ([num_rows, cols]) to the reservoir.
  void RecordRaw(std::span<const float> rows, int64_t num_rows, int64_t cols);
  int64_t raw_sample_rows(int64_t cols) const {
    return cols == 0 ? 0 : static_cast<int64_t>(raw_samples.size()) / cols;
  }
  bool empty() const { return rows_seen == 0; }
};

}  // namespace flatfleet::quant
