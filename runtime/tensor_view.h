// Non-owning 2-D views of typed memory: the currency of the op interface (kernels/backend.h).
// Every activation of the engine is a matrix [rows, cols] with a row stride (in elements), so a
// view can select columns of a wider matrix (q, k and v of a fused projection) without a copy.
// A host float32 `Tensor` converts implicitly, which keeps the CPU reference ops callable on
// Tensors.
#pragma once

#include <cstdint>
#include <span>

#include "common/tensor.h"
#include "runtime/memory_kind.h"
#include "runtime/scalar_type.h"

namespace flatfleet::runtime {

struct TensorView {
  void* data = nullptr;
  ScalarType type = ScalarType::kFloat32;
  MemoryKind memory = MemoryKind::kHost;
  int64_t rows = 0;
  int64_t cols = 0;
  int64_t row_stride = 0;  // elements between row starts; cols when dense

  TensorView() = default;
  TensorView(void* data, ScalarType type, MemoryKind memory, int64_t rows, int64_t cols)
      : data(data), type(type), memory(memory), rows(rows), cols(cols), row_stride(cols) {}
  // A host float32 tensor as [size / dim(-1), dim(-1)].
  TensorView(Tensor& tensor)  // NOLINT(google-explicit-constructor): Tensors are host views
      : TensorView(tensor.data(), ScalarType::kFloat32, MemoryKind::kHost, RowsOf(tensor),
                   tensor.rank() == 0 ? 1 : tensor.dim(-1)) {}

  bool dense() const { return row_stride == cols; }
  int64_t size() const { return rows * cols; }
  int64_t bytes() const { return size() * static_cast<int64_t>(ScalarSize(type)); }
  template <typename T>
  T* as() const {
    return static_cast<T*>(data);
  }
  template <typename T>
  T* row(int64_t r) const {
    return static_cast<T*>(data) + r * row_stride;
  }
  // Columns [begin, begin + count) of every row.
  TensorView Columns(int64_t begin, int64_t count) const {
    TensorView view = *this;
    view.data = static_cast<char*>(data) + begin * static_cast<int64_t>(ScalarSize(type));
    view.cols = count;
    return view;
  }
  // Rows [begin, begin + count).
  TensorView Rows(int64_t begin, int64_t count) const {
    TensorView view = *this;
    view.data =
        static_cast<char*>(data) + begin * row_stride * static_cast<int64_t>(ScalarSize(type));
    view.rows = count;
    return view;
  }
  // Host float32 dense views only.
  std::span<float> floats() const { return {as<float>(), static_cast<size_t>(size())}; }

  static int64_t RowsOf(const Tensor& tensor) {
    return tensor.rank() == 0 ? 1 : (tensor.dim(-1) == 0 ? 0 : tensor.size() / tensor.dim(-1));
  }
};

// A read-only view; any TensorView (and so any Tensor) converts to it.
struct ConstTensorView {
  const void* data = nullptr;
  ScalarType type = ScalarType::kFloat32;
  MemoryKind memory = MemoryKind::kHost;
  int64_t rows = 0;
  int64_t cols = 0;
  int64_t row_stride = 0;

  ConstTensorView() = default;
  ConstTensorView(const void* data, ScalarType type, MemoryKind memory, int64_t rows, int64_t cols)
      : data(data), type(type), memory(memory), rows(rows), cols(cols), row_stride(cols) {}
  ConstTensorView(const TensorView& view)  // NOLINT(google-explicit-constructor)
      : data(view.data),
        type(view.type),
        memory(view.memory),
        rows(view.rows),
        cols(view.cols),
        row_stride(view.row_stride) {}
  ConstTensorView(const Tensor& tensor)  // NOLINT(google-explicit-constructor)
      : ConstTensorView(tensor.data(), ScalarType::kFloat32, MemoryKind::kHost,
                        TensorView::RowsOf(tensor), tensor.rank() == 0 ? 1 : tensor.dim(-1)) {}

  bool dense() const { return row_stride == cols; }
  int64_t size() const { return rows * cols; }
  int64_t bytes() const { return size() * static_cast<int64_t>(ScalarSize(type)); }
  template <typename T>
  const T* as() const {
    return static_cast<const T*>(data);
  }
  template <typename T>
  const T* row(int64_t r) const {
    return static_cast<const T*>(data) + r * row_stride;
  }
  ConstTensorView Columns(int64_t begin, int64_t count) const {
    ConstTensorView view = *this;
    view.data = static_cast<const char*>(data) + begin * static_cast<int64_t>(ScalarSize(type));
    view.cols = count;
    return view;
  }
  ConstTensorView Rows(int64_t begin, int64_t count) const {
    ConstTensorView view = *this;
    view.data = static_cast<const char*>(data) +
                begin * row_stride * static_cast<int64_t>(ScalarSize(type));
    view.rows = count;
    return view;
  }
  std::span<const float> floats() const { return {as<float>(), static_cast<size_t>(size())}; }
};

}  // namespace flatfleet::runtime
