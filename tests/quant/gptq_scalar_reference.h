// The scalar GPTQ as quant/gptq_quantizer.cc ran it before the solver interface (scalar Cholesky,
// a separate L^-1 and H^-1, five [k, k] buffers), with the pre-rounding value of every code
// recorded: the reference gptq_solver_test.cc compares both solvers with. Not production code.
#pragma once

#include <algorithm>
#include <cmath>
#include <numeric>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_format.h"
#include "common/dtype.h"
#include "common/status_macros.h"
#include "kernels/cpu/quant/rtn_quantizer.h"
#include "quant/gptq_quantizer.h"
#include "quant/weight_clip_search.h"

namespace flatfleet::quant::reference {

// In-place lower Cholesky factor of a symmetric positive definite [k, k] matrix (the upper
// triangle is zeroed). Errors when a pivot is not positive.
inline absl::Status CholeskyLower(std::vector<double>& a, int64_t k) {
  for (int64_t j = 0; j < k; ++j) {
    double diagonal = a[j * k + j];
    for (int64_t p = 0; p < j; ++p) diagonal -= a[j * k + p] * a[j * k + p];
    if (!(diagonal > 0.0) || !std::isfinite(diagonal)) {
      return absl::FailedPreconditionError(absl::StrFormat(
          "GPTQ: the Hessian is not positive definite at column %d (raise the dampening)", j));
    }
    const double pivot = std::sqrt(diagonal);
    a[j * k + j] = pivot;
    for (int64_t i = j + 1; i < k; ++i) {
      double sum = a[i * k + j];
      for (int64_t p = 0; p < j; ++p) sum -= a[i * k + p] * a[j * k + p];
      a[i * k + j] = sum / pivot;
    }
    for (int64_t i = 0; i < j; ++i) a[i * k + j] = 0.0;
  }
  return absl::OkStatus();
}

// U (upper, row-major) with H^-1 = U^T U, from H.
inline absl::StatusOr<std::vector<double>> UpperCholeskyOfInverse(std::vector<double> h,
                                                                  int64_t k) {
  FF_RETURN_IF_ERROR(CholeskyLower(h, k));  // H = L L^T
  // L^-1 (lower), column by column by forward substitution.
  std::vector<double> inv(k * k, 0.0);
  for (int64_t c = 0; c < k; ++c) {
    inv[c * k + c] = 1.0 / h[c * k + c];
    for (int64_t i = c + 1; i < k; ++i) {
      double sum = 0.0;
      for (int64_t p = c; p < i; ++p) sum += h[i * k + p] * inv[p * k + c];
      inv[i * k + c] = -sum / h[i * k + i];
    }
  }
  // H^-1 = L^-T L^-1.
  std::vector<double> hinv(k * k, 0.0);
  for (int64_t i = 0; i < k; ++i) {
    for (int64_t j = 0; j <= i; ++j) {
      double sum = 0.0;
      for (int64_t p = i; p < k; ++p) sum += inv[p * k + i] * inv[p * k + j];
      hinv[i * k + j] = hinv[j * k + i] = sum;
    }
  }
  FF_RETURN_IF_ERROR(CholeskyLower(hinv, k));  // H^-1 = M M^T, U = M^T
  std::vector<double> upper(k * k, 0.0);
  for (int64_t i = 0; i < k; ++i) {
    for (int64_t j = 0; j <= i; ++j) upper[j * k + i] = hinv[i * k + j];
  }
  return upper;
}

struct GroupParameters {
  std::vector<float> scale;   // [rows]
  std::vector<int32_t> zero;  // [rows]
  std::vector<uint16_t> scale_bits;
};

// RTN's scale and zero point of each row of `values` [rows, width] as one group.
inline absl::StatusOr<GroupParameters> ParametersOf(const std::vector<float>& values, int64_t rows,
                                                    int64_t width, QuantFormat format,
                                                    bool clip_search) {
  format.group_size = 0;
  QuantizedMatrix quantized;
  if (clip_search) {
    FF_ASSIGN_OR_RETURN(ClipSearchResult searched,
                        QuantizeRtnWithClipSearch(values, rows, width, format));
    quantized = std::move(searched.matrix);
  } else {
    FF_ASSIGN_OR_RETURN(quantized, QuantizeRtn(values, rows, width, format));
  }
  GroupParameters params;
  params.scale_bits = quantized.scales;
  for (int64_t r = 0; r < rows; ++r) {
    params.scale.push_back(quantized.Scale(r, 0));
    params.zero.push_back(quantized.ZeroPoint(r, 0));
  }
  return params;
}

// The scalar GPTQ with `pre_rounding` [rows, cols] (original column order) set to each code's
// value / scale before rounding, for the tie analysis of the comparison test.
inline absl::StatusOr<QuantizedMatrix> ScalarGptq(std::span<const float> weight, int64_t rows,
                                                  int64_t cols, std::span<const double> hessian,
                                                  const QuantFormat& format,
                                                  const GptqOptions& options,
                                                  std::vector<float>& pre_rounding) {
  pre_rounding.assign(rows * cols, 0.0f);
  if (rows <= 0 || cols <= 0 || static_cast<int64_t>(weight.size()) != rows * cols ||
      static_cast<int64_t>(hessian.size()) != cols * cols) {
    return absl::InvalidArgumentError(
        absl::StrFormat("GPTQ: weight of %d values and Hessian of %d for a %d x %d matrix",
                        weight.size(), hessian.size(), rows, cols));
  }
  if (!(options.damp >= 0.0) || options.block_size <= 0) {
    return absl::InvalidArgumentError("GPTQ: need damp >= 0 and block_size > 0");
  }
  const int64_t group_size = format.group_size == 0 ? cols : format.group_size;
  if (format.group_size < 0 || cols % group_size != 0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("GPTQ: group size %d does not divide %d", format.group_size, cols));
  }
  for (double v : hessian) {
    if (!std::isfinite(v)) return absl::InvalidArgumentError("GPTQ: non-finite Hessian entry");
  }
  const int64_t groups = cols / group_size;
  const bool per_channel = format.group_size == 0;

  std::vector<double> h(hessian.begin(), hessian.end());
  std::vector<float> original(weight.begin(), weight.end());
  double mean_diagonal = 0.0;
  for (int64_t i = 0; i < cols; ++i) {
    if (h[i * cols + i] <= 0.0) {  // an input that is always zero: its column is irrelevant
      h[i * cols + i] = 1.0;
      for (int64_t r = 0; r < rows; ++r) original[r * cols + i] = 0.0f;
    }
    mean_diagonal += h[i * cols + i];
  }
  mean_diagonal /= static_cast<double>(cols);
  for (int64_t i = 0; i < cols; ++i) h[i * cols + i] += options.damp * mean_diagonal;

  // Column visiting order (act_order: decreasing H_ii, ties by index).
  std::vector<int64_t> order(cols);
  std::iota(order.begin(), order.end(), 0);
  if (options.act_order) {
    std::stable_sort(order.begin(), order.end(),
                     [&](int64_t a, int64_t b) { return h[a * cols + a] > h[b * cols + b]; });
  }
  std::vector<double> hp(cols * cols);
  for (int64_t i = 0; i < cols; ++i) {
    for (int64_t j = 0; j < cols; ++j) hp[i * cols + j] = h[order[i] * cols + order[j]];
  }
  FF_ASSIGN_OR_RETURN(std::vector<double> u, UpperCholeskyOfInverse(std::move(hp), cols));

  // Working copy in visiting order.
  std::vector<double> w(rows * cols);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t p = 0; p < cols; ++p) w[r * cols + p] = original[r * cols + order[p]];
  }

  QuantizedMatrix out;
  out.rows = rows;
  out.cols = cols;
  out.format = format;
  out.format.clip_ratio = options.clip_search ? 1.0f : format.clip_ratio;
  out.codes.resize(rows * cols);
  out.scales.resize(rows * groups);
  if (!format.symmetric) out.zero_points.resize(rows * groups);
  const int32_t qmin = MinCode(format);
  const int32_t qmax = MaxCode(format);

  std::vector<GroupParameters> params(groups);
  std::vector<bool> have_params(groups, false);
  auto set_params = [&](int64_t g, const std::vector<float>& values) -> absl::Status {
    FF_ASSIGN_OR_RETURN(params[g],
                        ParametersOf(values, rows, group_size, format, options.clip_search));
    have_params[g] = true;
    for (int64_t r = 0; r < rows; ++r) {
      out.scales[r * groups + g] = params[g].scale_bits[r];
      if (!format.symmetric) out.zero_points[r * groups + g] = int8_t(params[g].zero[r]);
    }
    return absl::OkStatus();
  };
  auto original_group = [&](int64_t g) {
    std::vector<float> values(rows * group_size);
    for (int64_t r = 0; r < rows; ++r) {
      std::copy_n(original.begin() + r * cols + g * group_size, group_size,
                  values.begin() + r * group_size);
    }
    return values;
  };
  if (per_channel || options.act_order) {
    for (int64_t g = 0; g < groups; ++g) FF_RETURN_IF_ERROR(set_params(g, original_group(g)));
  }

  std::vector<double> errors;
  for (int64_t b1 = 0; b1 < cols; b1 += options.block_size) {
    const int64_t b2 = std::min(cols, b1 + options.block_size);
    const int64_t width = b2 - b1;
    errors.assign(rows * width, 0.0);
    for (int64_t p = b1; p < b2; ++p) {
      const int64_t col = order[p];
      const int64_t g = col / group_size;
      if (!have_params[g]) {
        // Without act_order columns come in order: the group's columns are all still pending
        // and hold their error-updated values.
        // Columns past the block have not received this block's errors yet (lazy update):
        // add them here so the parameters do not depend on the block size.
        std::vector<float> values(rows * group_size);
        for (int64_t r = 0; r < rows; ++r) {
          for (int64_t c = 0; c < group_size; ++c) {
            const int64_t j = g * group_size + c;
            double value = w[r * cols + j];
            if (j >= b2) {
              for (int64_t q = b1; q < p; ++q)
                value -= errors[r * width + (q - b1)] * u[q * cols + j];
            }
            values[r * group_size + c] = static_cast<float>(value);
          }
        }
        FF_RETURN_IF_ERROR(set_params(g, values));
      }
      const double pivot = u[p * cols + p];
      for (int64_t r = 0; r < rows; ++r) {
        const float value = static_cast<float>(w[r * cols + p]);
        const float scale = params[g].scale[r];
        const int32_t zero = params[g].zero[r];
        pre_rounding[r * cols + col] = value / scale;
        const int32_t code =
            std::clamp(static_cast<int32_t>(std::nearbyint(value / scale)) + zero, qmin, qmax);
        out.codes[r * cols + col] = static_cast<int8_t>(code);
        const double dequantized = double{scale} * (code - zero);
        const double error = (w[r * cols + p] - dequantized) / pivot;
        errors[r * width + (p - b1)] = error;
        if (error == 0.0) continue;
        double* row = w.data() + r * cols;
        const double* u_row = u.data() + p * cols;
        for (int64_t j = p + 1; j < b2; ++j) row[j] -= error * u_row[j];
      }
    }
    // The block's errors onto every later column at once.
    for (int64_t r = 0; r < rows; ++r) {
      double* row = w.data() + r * cols;
      for (int64_t p = b1; p < b2; ++p) {
        const double error = errors[r * width + (p - b1)];
        if (error == 0.0) continue;
        const double* u_row = u.data() + p * cols;
        for (int64_t j = b2; j < cols; ++j) row[j] -= error * u_row[j];
      }
    }
  }
  FF_RETURN_IF_ERROR(out.Validate());
  return out;
}

}  // namespace flatfleet::quant::reference
