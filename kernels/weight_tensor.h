// A non-linear weight prepared for a backend: a norm's scale vector, the rotary frequencies, an
// embedding table. The backend picks the memory and type (host float32 on the CPU; device memory
// on CUDA: embedding tables in bf16, vectors in float32).
#pragma once

#include <cstdint>
#include <memory>

#include "runtime/buffer.h"
#include "runtime/tensor_view.h"

namespace flatfleet::kernels {

enum class WeightUse { kVector, kEmbeddingTable };

class WeightTensor {
 public:
  WeightTensor(runtime::Buffer buffer, runtime::ConstTensorView view)
      : buffer_(std::move(buffer)), view_(view) {}
  const runtime::ConstTensorView& view() const { return view_; }
  int64_t rows() const { return view_.rows; }
  int64_t cols() const { return view_.cols; }

 private:
  runtime::Buffer buffer_;
  runtime::ConstTensorView view_;
};

}  // namespace flatfleet::kernels
