#include "kernels/cpu/pointwise.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "common/thread_pool.h"
#include "kernels/cpu/dot.h"

namespace flatfleet::kernels::cpu {
namespace {

// Elementwise ops are memory-bound: only split arrays big enough to amortise a wake-up.
constexpr int64_t kMinElementsPerChunk = 1 << 15;

}  // namespace

void RmsNormRows(const float* x, int64_t rows, int64_t cols, const float* weight, float eps,
                 float* y) {
  ThreadPool::Default().ParallelFor(
      rows,
      [&](int64_t begin, int64_t end) {
        for (int64_t r = begin; r < end; ++r) {
          const float* in = x + r * cols;
          float* out = y + r * cols;
          const float sum_squares = Dot(in, in, cols);
          // Hugging Face: x * rsqrt(mean + eps), then weight * that.
          const float inv_rms = 1.0f / std::sqrt(sum_squares / static_cast<float>(cols) + eps);
          for (int64_t i = 0; i < cols; ++i) out[i] = weight[i] * (in[i] * inv_rms);
        }
      },
      /*min_chunk=*/std::max<int64_t>(1, kMinElementsPerChunk / std::max<int64_t>(1, cols)));
}

void SiluMul(const float* gate, const float* up, int64_t n, float* out) {
  ThreadPool::Default().ParallelFor(
      n,
      [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i) {
          const float g = gate[i];
          out[i] = g / (1.0f + std::exp(-g)) * up[i];
        }
      },
      kMinElementsPerChunk);
}

void AddInPlace(float* x, const float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] += y[i];
}

void GatherRows(const float* src, int64_t cols, std::span<const int64_t> rows, float* out) {
  for (size_t r = 0; r < rows.size(); ++r) {
    std::memcpy(out + r * cols, src + rows[r] * cols, sizeof(float) * cols);
  }
}

}  // namespace flatfleet::kernels::cpu
