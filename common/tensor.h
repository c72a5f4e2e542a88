// A dense, row-major, host-resident float32 tensor: the currency of the reference engine.
#pragma once

#include <cstdint>
#include <numeric>
#include <span>
#include <string>
#include <vector>

namespace flatfleet {

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(std::vector<int64_t> shape) : shape_(std::move(shape)), data_(NumElements(shape_)) {}
  Tensor(std::vector<int64_t> shape, std::vector<float> data)
      : shape_(std::move(shape)), data_(std::move(data)) {}

  static int64_t NumElements(const std::vector<int64_t>& shape) {
    return std::accumulate(shape.begin(), shape.end(), int64_t{1}, std::multiplies<>());
  }

  const std::vector<int64_t>& shape() const { return shape_; }
  int64_t dim(int i) const { return shape_.at(i < 0 ? shape_.size() + i : i); }
  int rank() const { return static_cast<int>(shape_.size()); }
  int64_t size() const { return static_cast<int64_t>(data_.size()); }

  float* data() { return data_.data(); }
  const float* data() const { return data_.data(); }
  std::span<float> span() { return data_; }
  std::span<const float> span() const { return data_; }
  std::vector<float>& vector() { return data_; }
  const std::vector<float>& vector() const { return data_; }

  // Pointer to row `i` when viewed as [size / dim(-1), dim(-1)].
  float* row(int64_t i) { return data_.data() + i * shape_.back(); }
  const float* row(int64_t i) const { return data_.data() + i * shape_.back(); }

  std::string ShapeString() const {
    std::string out = "[";
    for (size_t i = 0; i < shape_.size(); ++i) {
      if (i) out += ", ";
      out += std::to_string(shape_[i]);
    }
    return out + "]";
  }

 private:
  std::vector<int64_t> shape_;
  std::vector<float> data_;
};

}  // namespace flatfleet
