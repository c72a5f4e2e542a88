// GPTQ weight quantization (Frantar et al., arXiv 2210.17323): quantize a weight W [n, k] column
// by column, and after each column spread its rounding error over the not yet quantized columns
// so that the layer OUTPUT error ||X W^T - X What^T||^2 on calibration inputs X is small, using
// the Hessian H = X^T X of that objective (the caller passes H of the inputs the GEMM sees,
// i.e. after the layer's online transforms).
//
//   H += damp * mean(diag H) * I            (dead inputs, H_ii = 0: H_ii = 1 and W[:, i] = 0)
//   U = upper Cholesky factor of H^-1       (H^-1 = U^T U)
//   for each column i (in order, or by decreasing H_ii with act_order):
//     q_i = quantize(w_i) with its group's scale / zero point
//     e   = (w_i - q_i) / U_ii
//     w_j -= e * U_ij for the later columns j     (lazily: inside a block of `block_size`
//                                                  columns, then once per block for the rest)
//
// The result is a regular QuantizedMatrix in the RTN formats (rtn_quantizer.h): symmetric or
// with zero points, per channel or per group of consecutive columns, FP16 scales, so the
// existing integer GEMMs run it unchanged. Scales and zero points are computed exactly as RTN
// computes them (QuantizeRtn, optionally with the clip search of weight_clip_search.h) on:
//   * per channel: the original row;
//   * per group without act_order: the group's columns as updated when the group's first column
//     is reached (the reference GPTQ);
//   * per group with act_order: the original group (static groups: columns are visited out of
//     order, so a group's parameters are fixed up front).
// Codes are clamp(rne(float(w) / s) + z, qmin, qmax), RTN's rounding. With a diagonal H no error
// is propagated and the result equals RTN's bit for bit.
//
// Arithmetic is double. Cost O(k^3 + n k^2), in gptq_solver.h's two steps: OpenBLAS (loaded at
// first use, multithreaded) when available, else scalar loops.
//
// Memory: QuantizeGptqInPlace damps, permutes (act_order) and factors the caller's H itself, so
// GPTQ holds no [k, k] buffer of its own; QuantizeGptq copies H first (8 k^2 bytes, 6.1 GiB at
// k = 28672). Besides that: the codes (n k bytes) and a double working copy of at most
// kGptqWorkingBytes of weight rows (rows are independent once U is known: they are quantized
// chunk by chunk, and the scalar solver's codes do not depend on the chunking).
#pragma once

#include <cstdint>
#include <span>

#include "absl/status/statusor.h"
#include "kernels/cpu/quant/quantized_matrix.h"
#include "quant/gptq_solver.h"

namespace flatfleet::quant {

// The double working copy of the weight rows GPTQ updates at a time.
inline constexpr int64_t kGptqWorkingBytes = int64_t{256} << 20;

struct GptqOptions {
  double damp = 0.01;
  int64_t block_size = 128;
  bool act_order = false;
  bool clip_search = false;            // choose each group's clip ratio by weight MSE (as for RTN)
  const GptqSolver* solver = nullptr;  // null: DefaultGptqSolver() (OpenBLAS, else scalar)
  int64_t working_rows = 0;            // rows per working chunk; 0: kGptqWorkingBytes / (8 cols)
};

// `weight` [rows, cols] row-major, `hessian` [cols, cols] row-major symmetric positive
// semi-definite. Errors on shape mismatches, non-finite values, or a Hessian that stays
// singular after dampening (damp 0 with rank-deficient H).
absl::StatusOr<QuantizedMatrix> QuantizeGptq(std::span<const float> weight, int64_t rows,
                                             int64_t cols, std::span<const double> hessian,
                                             const QuantFormat& format,
                                             const GptqOptions& options = {});
// The same result (bit for bit), with `hessian` as GPTQ's working buffer: on return it holds U
// (unspecified after an error). For a caller that no longer needs H.
absl::StatusOr<QuantizedMatrix> QuantizeGptqInPlace(std::span<const float> weight, int64_t rows,
                                                    int64_t cols, std::span<double> hessian,
                                                    const QuantFormat& format,
                                                    const GptqOptions& options = {});

// sum over samples of ||x W^T - x What^T||^2 expressed through H = X^T X:
// trace((W - What) H (W - What)^T). For comparing quantizers on the same H.
double OutputErrorWithHessian(std::span<const float> weight, std::span<const float> dequantized,
                              int64_t rows, int64_t cols, std::span<const double> hessian);

}  // namespace flatfleet::quant
