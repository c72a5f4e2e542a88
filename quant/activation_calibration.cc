#include "quant/activation_calibration.h"

#include <algorithm>
#include <cmath>

#include "kernels/cpu/quant/seeded_random.h"
#include "quant/gptq_device_backend.h"
#include "quant/gram_accumulation.h"

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

void ActivationCalibration::RecordRaw(std::span<const float> rows, int64_t num_rows, int64_t cols,
                                      const CalibrationOptions& options) {
  if (raw_channel_absmax.empty()) raw_channel_absmax.assign(cols, 0.0f);
  if (options.record_gram && raw_gram.empty() && device_gram == nullptr) {
    if (SelectedGptqDevice() == GptqDevice::kCuda) {
      // Falls back to the CPU sum when the device cannot hold it; a later device failure is
      // reported when the Gram is read (DeviceGram::ToHost).
      if (auto created = DeviceGram::Create(cols); created.ok()) device_gram = std::move(*created);
    }
    if (device_gram == nullptr) raw_gram.assign(cols * cols, 0.0);
  }
  if (device_gram != nullptr) device_gram->Add(rows.first(num_rows * cols), num_rows).IgnoreError();
  if (!raw_gram.empty()) AccumulateGram(rows, num_rows, cols, raw_gram);
  for (int64_t r = 0; r < num_rows; ++r, ++raw_rows_seen) {
    const float* row = rows.data() + r * cols;
    for (int64_t k = 0; k < cols; ++k) {
      raw_channel_absmax[k] = std::max(raw_channel_absmax[k], std::fabs(row[k]));
    }
    if (options.max_raw_samples <= 0) continue;
    int64_t slot = raw_rows_seen;
    if (slot >= options.max_raw_samples) {
      // Row i (0-based) replaces a uniform slot of [0, i] when that slot is in the reservoir; the
      // draw depends only on i, so the sample does not depend on how rows were batched.
      slot = static_cast<int64_t>(SplitMix64(0x5A3F1E0DULL + raw_rows_seen).Next() %
                                  static_cast<uint64_t>(raw_rows_seen + 1));
      if (slot >= options.max_raw_samples) continue;
      std::copy(row, row + cols, raw_samples.begin() + slot * cols);
    } else {
      raw_samples.insert(raw_samples.end(), row, row + cols);
    }
  }
}

}  // namespace flatfleet::quant
