// Float32 GEMM y = x * W^T (+ b) with W packed once into column panels, cache-blocked over the
// reduction dimension and split across ThreadPool::Default().
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace flatfleet::kernels::cpu {

// W [n, k] rearranged into panels of kPanelWidth output columns; inside a panel the values of
// one reduction index are adjacent, so the micro-kernel reads the panel sequentially.
class PackedMatrix {
 public:
  static constexpr int64_t kPanelWidth = 16;

  // `w` is row-major [n, k]; `bias` is [n] or null.
  PackedMatrix(const float* w, int64_t n, int64_t k, const float* bias);

  int64_t n() const { return n_; }
  int64_t k() const { return k_; }
  int64_t num_panels() const { return (n_ + kPanelWidth - 1) / kPanelWidth; }
  const float* panel(int64_t p) const { return data_.data() + p * k_ * kPanelWidth; }
  const float* bias() const { return bias_.empty() ? nullptr : bias_.data(); }
  // W back as row-major [n, k] (the values packing moved, bit for bit), into `w`.
  void Unpack(std::span<float> w) const;

 private:
  int64_t n_;
  int64_t k_;
  std::vector<float> data_;  // [num_panels][k][kPanelWidth], zero-padded past n
  std::vector<float> bias_;
};

// y[m, n] = x[m, k] * W^T + bias; rows of x and y are contiguous (strides k and n).
void Gemm(const float* x, int64_t m, const PackedMatrix& w, float* y);

}  // namespace flatfleet::kernels::cpu
