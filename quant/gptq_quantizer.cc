#include "quant/gptq_quantizer.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "absl/strings/str_format.h"
#include "common/dtype.h"
#include "common/status_macros.h"
#include "kernels/cpu/quant/rtn_quantizer.h"
#include "quant/gptq_solver.h"
#include "quant/weight_clip_search.h"

namespace flatfleet::quant {
namespace {

struct GroupParameters {
  std::vector<float> scale;   // [rows]
  std::vector<int32_t> zero;  // [rows]
  std::vector<uint16_t> scale_bits;
};

// RTN's scale and zero point of each row of `values` [rows, width] as one group.
absl::StatusOr<GroupParameters> ParametersOf(const std::vector<float>& values, int64_t rows,
                                             int64_t width, QuantFormat format, bool clip_search) {
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

// The rows of a symmetric [n, n] matrix and then its columns reordered in place, so that entry
// (i, j) becomes the old (order[i], order[j]): rows by cycles through one row buffer, then each
// row through the same buffer. Pure moves: the values are bit for bit the permuted copy's.
void PermuteSymmetric(std::span<double> a, int64_t n, const std::vector<int64_t>& order) {
  std::vector<double> buffer(n);
  std::vector<bool> placed(n, false);
  for (int64_t start = 0; start < n; ++start) {
    if (placed[start] || order[start] == start) continue;
    std::copy_n(a.begin() + start * n, n, buffer.begin());
    int64_t i = start;
    for (; order[i] != start; i = order[i]) {
      std::copy_n(a.begin() + order[i] * n, n, a.begin() + i * n);
      placed[i] = true;
    }
    std::copy_n(buffer.begin(), n, a.begin() + i * n);
    placed[i] = true;
  }
  for (int64_t i = 0; i < n; ++i) {
    double* row = a.data() + i * n;
    for (int64_t j = 0; j < n; ++j) buffer[j] = row[order[j]];
    std::copy_n(buffer.begin(), n, row);
  }
}

}  // namespace

absl::StatusOr<QuantizedMatrix> QuantizeGptq(std::span<const float> weight, int64_t rows,
                                             int64_t cols, std::span<const double> hessian,
                                             const QuantFormat& format,
                                             const GptqOptions& options) {
  std::vector<double> working(hessian.begin(), hessian.end());
  return QuantizeGptqInPlace(weight, rows, cols, working, format, options);
}

absl::StatusOr<QuantizedMatrix> QuantizeGptqInPlace(std::span<const float> weight, int64_t rows,
                                                    int64_t cols, std::span<double> hessian,
                                                    const QuantFormat& format,
                                                    const GptqOptions& options) {
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

  // Memory besides `hessian` (factored into U in place) and `weight`: one byte per code, the
  // double working copy of a chunk of rows (GPTQ treats rows independently once U is known) and
  // O(cols) vectors.
  std::vector<bool> dead(cols, false);  // an input that is always zero: its column is irrelevant
  std::vector<double> diagonal(cols);
  double mean_diagonal = 0.0;
  for (int64_t i = 0; i < cols; ++i) {
    diagonal[i] = hessian[i * cols + i];
    if (diagonal[i] <= 0.0) {
      diagonal[i] = 1.0;
      dead[i] = true;
    }
    mean_diagonal += diagonal[i];
  }
  mean_diagonal /= static_cast<double>(cols);
  for (int64_t i = 0; i < cols; ++i) diagonal[i] += options.damp * mean_diagonal;
  // The weight with the dead inputs' columns zeroed.
  auto original = [&](int64_t r, int64_t c) { return dead[c] ? 0.0f : weight[r * cols + c]; };

  // Column visiting order (act_order: decreasing H_ii, ties by index).
  std::vector<int64_t> order(cols);
  std::iota(order.begin(), order.end(), 0);
  if (options.act_order) {
    std::stable_sort(order.begin(), order.end(),
                     [&](int64_t a, int64_t b) { return diagonal[a] > diagonal[b]; });
  }
  const GptqSolver& solver = options.solver != nullptr ? *options.solver : DefaultGptqSolver();
  for (int64_t i = 0; i < cols; ++i) hessian[i * cols + i] = diagonal[i];
  if (options.act_order) PermuteSymmetric(hessian, cols, order);
  FF_RETURN_IF_ERROR(solver.UpperCholeskyOfInverse(hessian, cols));
  const std::span<const double> u = hessian;

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

  const int64_t chunk_rows = std::clamp<int64_t>(
      options.working_rows > 0 ? options.working_rows : kGptqWorkingBytes / (8 * cols), 1, rows);
  std::vector<double> w;
  std::vector<double> errors;
  for (int64_t r0 = 0; r0 < rows; r0 += chunk_rows) {
    const int64_t n = std::min(chunk_rows, rows - r0);  // rows r0 .. r0 + n of the weight
    // Working copy in visiting order.
    w.resize(n * cols);
    for (int64_t r = 0; r < n; ++r) {
      for (int64_t p = 0; p < cols; ++p) w[r * cols + p] = original(r0 + r, order[p]);
    }

    std::vector<GroupParameters> params(groups);
    std::vector<bool> have_params(groups, false);
    auto set_params = [&](int64_t g, const std::vector<float>& values) -> absl::Status {
      FF_ASSIGN_OR_RETURN(params[g],
                          ParametersOf(values, n, group_size, format, options.clip_search));
      have_params[g] = true;
      for (int64_t r = 0; r < n; ++r) {
        out.scales[(r0 + r) * groups + g] = params[g].scale_bits[r];
        if (!format.symmetric) out.zero_points[(r0 + r) * groups + g] = int8_t(params[g].zero[r]);
      }
      return absl::OkStatus();
    };
    auto original_group = [&](int64_t g) {
      std::vector<float> values(n * group_size);
      for (int64_t r = 0; r < n; ++r) {
        for (int64_t c = 0; c < group_size; ++c) {
          values[r * group_size + c] = original(r0 + r, g * group_size + c);
        }
      }
      return values;
    };
    if (per_channel || options.act_order) {
      for (int64_t g = 0; g < groups; ++g) FF_RETURN_IF_ERROR(set_params(g, original_group(g)));
    }

    for (int64_t b1 = 0; b1 < cols; b1 += options.block_size) {
      const int64_t b2 = std::min(cols, b1 + options.block_size);
      const int64_t width = b2 - b1;
      errors.assign(n * width, 0.0);
      for (int64_t p = b1; p < b2; ++p) {
        const int64_t col = order[p];
        const int64_t g = col / group_size;
        if (!have_params[g]) {
          // Without act_order columns come in order: the group's columns are all still pending
          // and hold their error-updated values.
          // Columns past the block have not received this block's errors yet (lazy update):
          // add them here so the parameters do not depend on the block size.
          std::vector<float> values(n * group_size);
          for (int64_t r = 0; r < n; ++r) {
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
        for (int64_t r = 0; r < n; ++r) {
          const float value = static_cast<float>(w[r * cols + p]);
          const float scale = params[g].scale[r];
          const int32_t zero = params[g].zero[r];
          const int32_t code =
              std::clamp(static_cast<int32_t>(std::nearbyint(value / scale)) + zero, qmin, qmax);
          out.codes[(r0 + r) * cols + col] = static_cast<int8_t>(code);
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
      solver.PropagateBlockErrors(errors, n, width, u, cols, b1, w);
    }
  }
  FF_RETURN_IF_ERROR(out.Validate());
  return out;
}

double OutputErrorWithHessian(std::span<const float> weight, std::span<const float> dequantized,
                              int64_t rows, int64_t cols, std::span<const double> hessian) {
  double total = 0.0;
  std::vector<double> d(cols);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      d[c] = double{weight[r * cols + c]} - dequantized[r * cols + c];
    }
    for (int64_t i = 0; i < cols; ++i) {
      double dot = 0.0;
      for (int64_t j = 0; j < cols; ++j) dot += hessian[i * cols + j] * d[j];
      total += d[i] * dot;
    }
  }
  return total;
}

}  // namespace flatfleet::quant
