// Float32 GEMM y = x * W^T (+ b) with W packed once into column panels, cache-blocked over the
// reduction dimension and split across ThreadPool::Default().
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "common/uninitialized_allocator.h"
#include "runtime/tensor_view.h"

namespace flatfleet::kernels::cpu {

// W [n, k] rearranged into panels of kPanelWidth output columns; inside a panel the values of
// one reduction index are adjacent, so the micro-kernel reads the panel sequentially.
class PackedMatrix {
 public:
  static constexpr int64_t kPanelWidth = 16;

  // `w` is row-major [n, k]; `bias` is [n] or null.
  PackedMatrix(const float* w, int64_t n, int64_t k, const float* bias);
  // From a host view of float32, bfloat16 or float16 rows [n, k] (any row stride), widened while
  // packing to the values WidenToFloat gives: no row-major float32 copy of W first. Other types
  // or device memory are the caller's to refuse (PackableView).
  PackedMatrix(const runtime::ConstTensorView& w, const float* bias);
  // Whether the view constructor takes `w`.
  static bool PackableView(const runtime::ConstTensorView& w);

  int64_t n() const { return n_; }
  int64_t k() const { return k_; }
  int64_t num_panels() const { return (n_ + kPanelWidth - 1) / kPanelWidth; }
  const float* panel(int64_t p) const { return data_.data() + p * k_ * kPanelWidth; }
  const float* bias() const { return bias_.empty() ? nullptr : bias_.data(); }
  // W back as row-major [n, k] (the values packing moved, bit for bit), into `w`.
  void Unpack(std::span<float> w) const;

 private:
  // Fills the panels with value(row, i) = W[row][i] (and the padding with zeros), in parallel.
  template <typename Value>
  void Pack(const Value& value);

  int64_t n_;
  int64_t k_;
  // [num_panels][k][kPanelWidth], zero-padded past n. Every element is written by the packing
  // (in parallel), so the buffer is not zero-filled on one thread first.
  std::vector<float, UninitializedAllocator<float>> data_;
  std::vector<float> bias_;
};

// y[m, n] = x[m, k] * W^T + bias; rows of x and y are contiguous (strides k and n).
void Gemm(const float* x, int64_t m, const PackedMatrix& w, float* y);

}  // namespace flatfleet::kernels::cpu
