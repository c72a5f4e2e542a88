// Row-wise and elementwise float32 ops: RMSNorm, SiLU-gated product, residual add, row gathers.
#pragma once

#include <cstdint>
#include <span>

namespace flatfleet::kernels::cpu {

// y[r] = x[r] / sqrt(mean(x[r]^2) + eps) * weight, for `rows` rows of `cols` values.
void RmsNormRows(const float* x, int64_t rows, int64_t cols, const float* weight, float eps,
                 float* y);

// out = silu(gate) * up = gate / (1 + exp(-gate)) * up.
void SiluMul(const float* gate, const float* up, int64_t n, float* out);

// x += y.
void AddInPlace(float* x, const float* y, int64_t n);

// out[r] = src[rows[r]] (rows of `cols` floats).
void GatherRows(const float* src, int64_t cols, std::span<const int64_t> rows, float* out);

}  // namespace flatfleet::kernels::cpu
