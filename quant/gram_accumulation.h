// X^T X accumulation for GPTQ's Hessian: OpenBLAS dsyrk (blas_library.h, multithreaded) when it
// loads, else a scalar loop.
//
// Precision: double. The rows arrive as float; they are widened to double in blocks and summed,
// so the Gram matrix is the same double sum on either path (up to the order of the additions).
// Float (ssyrk) would halve the buffer but lose about 3 decimal digits over millions of
// calibration rows, and GPTQ then inverts H, which amplifies that by cond(H).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace flatfleet::quant {

// gram [cols, cols] row-major += rows^T rows for `rows` [num_rows, cols]. Only the upper
// triangle is summed; the lower one is then mirrored from it, so callers see a full symmetric
// matrix. `gram` must already hold cols * cols values. `use_blas` false forces the scalar loop.
void AccumulateGram(std::span<const float> rows, int64_t num_rows, int64_t cols,
                    std::vector<double>& gram, bool use_blas = true);

}  // namespace flatfleet::quant
