#include "kernels/cpu/quant/rtn_quantizer.h"

#include <algorithm>
#include <cmath>
#include <mutex>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/dtype.h"
#include "common/thread_pool.h"

namespace flatfleet::quant {
namespace {

constexpr uint16_t kHalfOne = 0x3c00;

absl::Status CheckFormat(const QuantFormat& format, int64_t rows, int64_t cols,
                         size_t value_count) {
  if (format.bits < 2 || format.bits > 8) {
    return absl::InvalidArgumentError(absl::StrCat("bits must be in 2..8, got ", format.bits));
  }
  if (!(format.clip_ratio > 0.0f && format.clip_ratio <= 1.0f)) {
    return absl::InvalidArgumentError(
        absl::StrCat("clip_ratio must be in (0, 1], got ", format.clip_ratio));
  }
  if (rows < 0 || cols <= 0 || static_cast<int64_t>(value_count) != rows * cols) {
    return absl::InvalidArgumentError(
        absl::StrCat("shape [", rows, ", ", cols, "] does not match ", value_count, " values"));
  }
  if (format.balanced && !format.symmetric) {
    return absl::InvalidArgumentError("balanced codes are symmetric (no zero points)");
  }
  if (format.group_size < 0 || (format.group_size > 0 && cols % format.group_size != 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("group_size ", format.group_size, " does not divide the row length ", cols));
  }
  return absl::OkStatus();
}

int32_t RoundHalfEven(float x) { return static_cast<int32_t>(std::nearbyint(x)); }

}  // namespace

absl::StatusOr<uint16_t> ScaleToHalfRoundingUp(float scale) {
  if (!(scale > 0.0f) || !std::isfinite(scale)) {
    return absl::InvalidArgumentError(
        absl::StrCat("scale must be positive and finite, got ", scale));
  }
  uint16_t half = FloatToHalf(scale);
  // Positive FP16 bit patterns are ordered like their values, so +1 is the next larger value.
  if (HalfToFloat(half) < scale) ++half;
  if (half >= 0x7c00) {
    return absl::OutOfRangeError(absl::StrCat("scale ", scale, " exceeds the FP16 range"));
  }
  return half;
}

absl::StatusOr<QuantizedMatrix> QuantizeRtn(std::span<const float> values, int64_t rows,
                                            int64_t cols, const QuantFormat& format) {
  if (auto status = CheckFormat(format, rows, cols, values.size()); !status.ok()) return status;
  QuantizedMatrix out;
  out.rows = rows;
  out.cols = cols;
  out.format = format;
  out.codes.resize(rows * cols);
  const int64_t group_size = out.GroupSize();
  const int64_t groups = out.GroupsPerRow();
  out.scales.resize(rows * groups);
  if (!format.symmetric) out.zero_points.resize(rows * groups);
  const int32_t qmin = MinCode(format);
  const int32_t qmax = MaxCode(format);

  // Rows are independent: quantized in parallel, each exactly as alone. The error reported is
  // the first bad row's, as a sequential pass would find it.
  auto quantize_row = [&](int64_t r) -> absl::Status {
    for (int64_t g = 0; g < groups; ++g) {
      const float* group = values.data() + r * cols + g * group_size;
      float lo = 0.0f, hi = 0.0f;  // the range always includes 0 so the zero point is storable
      for (int64_t i = 0; i < group_size; ++i) {
        if (!std::isfinite(group[i])) {
          return absl::InvalidArgumentError(
              absl::StrCat("non-finite value at row ", r, ", column ", g * group_size + i));
        }
        lo = std::min(lo, group[i]);
        hi = std::max(hi, group[i]);
      }
      lo *= format.clip_ratio;
      hi *= format.clip_ratio;
      // Balanced levels reach +-(2^b - 1) half-steps (= qmax - qmin).
      const float exact_scale = format.balanced
                                    ? std::max(-lo, hi) / static_cast<float>(qmax - qmin)
                                : format.symmetric ? std::max(-lo, hi) / static_cast<float>(qmax)
                                                   : (hi - lo) / static_cast<float>(qmax - qmin);
      uint16_t scale_bits = kHalfOne;
      if (exact_scale > 0.0f) {
        auto rounded = ScaleToHalfRoundingUp(exact_scale);
        if (!rounded.ok()) return rounded.status();
        scale_bits = *rounded;
      }
      const float scale = HalfToFloat(scale_bits);
      int32_t zero = 0;
      if (!format.symmetric) zero = std::clamp(qmin + RoundHalfEven(-lo / scale), qmin, qmax);
      out.scales[r * groups + g] = scale_bits;
      if (!format.symmetric) out.zero_points[r * groups + g] = static_cast<int8_t>(zero);
      for (int64_t i = 0; i < group_size; ++i) {
        const int32_t code =
            format.balanced
                ? std::clamp(RoundHalfEven((group[i] / scale - 1.0f) * 0.5f), qmin, qmax)
                : std::clamp(RoundHalfEven(group[i] / scale) + zero, qmin, qmax);
        out.codes[r * cols + g * group_size + i] = static_cast<int8_t>(code);
      }
    }
    return absl::OkStatus();
  };
  std::mutex error_mutex;
  int64_t error_row = rows;
  absl::Status error;
  ThreadPool::Default().ParallelFor(
      rows,
      [&](int64_t begin, int64_t end) {
        for (int64_t r = begin; r < end; ++r) {
          absl::Status status = quantize_row(r);
          if (status.ok()) continue;
          std::lock_guard<std::mutex> lock(error_mutex);
          if (r < error_row) {
            error_row = r;
            error = std::move(status);
          }
          return;  // this chunk's first bad row; a later chunk may hold none earlier
        }
      },
      std::max<int64_t>(1, (int64_t{1} << 15) / cols));
  if (!error.ok()) return error;
  return out;
}

absl::StatusOr<uint16_t> CalibratePerTensorScale(std::span<const float> calibration, int bits,
                                                 float clip_ratio) {
  if (bits < 2 || bits > 8) {
    return absl::InvalidArgumentError(absl::StrCat("bits must be in 2..8, got ", bits));
  }
  if (!(clip_ratio > 0.0f && clip_ratio <= 1.0f)) {
    return absl::InvalidArgumentError(
        absl::StrCat("clip_ratio must be in (0, 1], got ", clip_ratio));
  }
  float max_abs = 0.0f;
  for (float v : calibration) max_abs = std::max(max_abs, std::fabs(v));
  if (max_abs == 0.0f) return kHalfOne;
  return ScaleToHalfRoundingUp(clip_ratio * max_abs / static_cast<float>((1 << (bits - 1)) - 1));
}

absl::StatusOr<QuantizedMatrix> QuantizeWithStaticScale(std::span<const float> values, int64_t rows,
                                                        int64_t cols, int bits,
                                                        uint16_t scale_fp16) {
  QuantFormat format{.bits = bits, .symmetric = true, .group_size = 0, .clip_ratio = 1.0f};
  if (auto status = CheckFormat(format, rows, cols, values.size()); !status.ok()) return status;
  const float scale = HalfToFloat(scale_fp16);
  if (!(scale > 0.0f) || !std::isfinite(scale)) {
    return absl::InvalidArgumentError("static scale must be positive and finite");
  }
  QuantizedMatrix out;
  out.rows = rows;
  out.cols = cols;
  out.format = format;
  out.codes.resize(rows * cols);
  out.scales.assign(rows, scale_fp16);  // the per-tensor scale, repeated per row for uniformity
  const int32_t qmax = MaxCode(format);
  for (int64_t i = 0; i < rows * cols; ++i) {
    out.codes[i] = static_cast<int8_t>(std::clamp(RoundHalfEven(values[i] / scale), -qmax, qmax));
  }
  return out;
}

}  // namespace flatfleet::quant
