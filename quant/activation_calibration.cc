#include "quant/activation_calibration.h"

#include <algorithm>
#include <cmath>

namespace flatfleet::quant {
namespace {

uint64_t SplitMix64(uint64_t& state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

}  // namespace

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

void ActivationCalibration::RecordRaw(std::span<const float> rows, int64_t num_rows, int64_t cols,
                                      const CalibrationOptions& options) {
  if (raw_channel_absmax.empty()) raw_channel_absmax.assign(cols, 0.0f);
  if (options.record_gram && raw_gram.empty()) raw_gram.assign(cols * cols, 0.0);
  for (int64_t r = 0; r < num_rows; ++r) {
    const float* row = rows.data() + r * cols;
    for (int64_t k = 0; k < cols; ++k) {
      raw_channel_absmax[k] = std::max(raw_channel_absmax[k], std::fabs(row[k]));
    }
    // Reservoir sampling (Algorithm R): row number t (0-based) replaces a kept row with
    // probability max_raw_samples / (t + 1).
    const int64_t t = raw_rows_seen + r;
    int64_t slot = -1;
    const int64_t kept = raw_sample_rows(cols);
    if (kept < options.max_raw_samples) {
      slot = kept;
      raw_samples.resize((kept + 1) * cols);
    } else if (options.max_raw_samples > 0) {
      const auto draw = static_cast<int64_t>(SplitMix64(reservoir_state) % uint64_t(t + 1));
      if (draw < options.max_raw_samples) slot = draw;
    }
    if (slot >= 0) std::copy(row, row + cols, raw_samples.begin() + slot * cols);
    if (!raw_gram.empty()) {
      for (int64_t i = 0; i < cols; ++i) {
        const double xi = row[i];
        if (xi == 0.0) continue;
        double* gram_row = raw_gram.data() + i * cols;
        for (int64_t j = 0; j < cols; ++j) gram_row[j] += xi * row[j];
      }
    }
  }
  raw_rows_seen += num_rows;
}

}  // namespace flatfleet::quant
