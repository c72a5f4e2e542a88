// X^T X accumulation for GPTQ's Hessian with OpenBLAS's dsyrk (multithreaded by OpenBLAS).
//
// Precision: double. The rows arrive as float; they are widened to double in blocks and summed
// with dsyrk, so the Gram matrix is the same double sum the scalar loop formed (up to the order
// of the additions). Float (ssyrk) would halve the buffer but lose about 3 decimal digits over
// millions of calibration rows, and GPTQ then inverts H, which amplifies that by cond(H).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace flatfleet::quant {

// gram [cols, cols] row-major += rows^T rows for `rows` [num_rows, cols]. dsyrk updates the upper
// triangle; the lower triangle is then mirrored from it so callers see a full symmetric matrix.
// `gram` must already hold cols * cols values.
void AccumulateGram(std::span<const float> rows, int64_t num_rows, int64_t cols,
                    std::vector<double>& gram);

}  // namespace flatfleet::quant
