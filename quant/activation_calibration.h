// What a linear layer's inputs looked like on calibration data.
//
// Two views are kept because some transforms are themselves built from calibration data:
//   * the TRANSFORMED inputs (after the recipe's data-independent online transforms, i.e. what
//     gets quantized when there is no data-dependent transform): per-channel max|x|. QUIK picks
//     its FP16 outlier channels from it; per-tensor static activation scales are its maximum;
//   * the RAW inputs (before any transform): per-channel max|x|, a bounded reservoir sample of
//     rows and, when asked for, the Gram matrix X^T X. SmoothQuant's scales, FlattenQuant's
//     channel splits and GPTQ's Hessian are computed from these when the layer is (re)quantized;
//     the transformed statistics of a chain with data-dependent transforms are then recomputed
//     from the raw sample (quantized_linear.h).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

namespace flatfleet::quant {

class DeviceGram;  // gptq_device_backend.h

struct CalibrationOptions {
  // Rows kept in `raw_samples` (reservoir sampling beyond that; 0 keeps none).
  int64_t max_raw_samples = 256;
  // Accumulate `raw_gram` (in^2 doubles per layer; GPTQ needs it).
  bool record_gram = false;
};

struct ActivationCalibration {
  std::vector<float> channel_absmax;  // [transformed features]
  int64_t rows_seen = 0;

  // Raw, pre-transform inputs. A bounded uniform sample of rows (reservoir, Algorithm R with a
  // fixed per-row seed, so it does not depend on batching), [raw_sample_rows(in), in] row-major:
  // what FlatQuant trains on, ABQ's output correction is fitted on and SmoothQuant's alpha
  // search scores on. Holds every row while raw_rows_seen <= the bound.
  static constexpr int64_t kMaxRawSamples = 256;
  std::vector<float> raw_samples;
  int64_t raw_rows_seen = 0;
  std::vector<float> raw_channel_absmax;  // [in_features], over all raw rows
  // sum over all raw rows of x^T x, [in_features, in_features] row-major (empty unless asked).
  std::vector<double> raw_gram;
  // Instead of raw_gram when GPTQ runs on the GPU (SetGptqDevice): the same sum, on the device.
  std::shared_ptr<DeviceGram> device_gram;

  // Folds rows ([num_rows, cols], row-major) of TRANSFORMED inputs into channel_absmax.
  void Record(std::span<const float> rows, int64_t num_rows, int64_t cols);
  // Folds raw input rows ([num_rows, cols]) into the raw statistics (not into rows_seen).
  void RecordRaw(std::span<const float> rows, int64_t num_rows, int64_t cols,
                 const CalibrationOptions& options = {});
  bool empty() const { return rows_seen == 0; }
  bool has_raw() const { return !raw_channel_absmax.empty(); }
  int64_t raw_sample_rows(int64_t cols) const {
    return cols == 0 ? 0 : static_cast<int64_t>(raw_samples.size()) / cols;
  }
};

}  // namespace flatfleet::quant
