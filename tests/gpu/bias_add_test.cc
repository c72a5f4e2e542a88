// AddBias (kernels/cuda/bias_add.h) against the host: y = round(x + bias) is one IEEE float32
// addition and one round-to-nearest-even to the output type, so the GPU must match the host bit
// for bit (tolerance 0). Misaligned rows and bias, row strides, grid-stride loops in both
// dimensions, the float32 in-place case, and the argument checks.
#include "kernels/cuda/bias_add.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "tests/gpu/gpu_test_util.h"
#include "tests/gpu/ops_test_util.h"

namespace flatfleet::cuda {
namespace {

using testing::DeviceBuffer;

constexpr GemmElementType kBf16 = GemmElementType::kBf16, kF32 = GemmElementType::kFloat32;

// Elements of bias/y are held as raw bits: uint16_t for bf16, uint32_t for float32.
std::vector<uint32_t> AsBits(const std::vector<float>& values, GemmElementType type) {
  std::vector<uint32_t> bits(values.size());
  for (size_t i = 0; i < values.size(); ++i) {
    bits[i] = type == kBf16 ? testing::FloatToBf16(values[i]) : testing::FloatBits(values[i]);
  }
  return bits;
}
float FromBits(uint32_t bits, GemmElementType type) {
  return type == kBf16 ? testing::Bf16ToFloat(static_cast<uint16_t>(bits))
                       : testing::BitsToFloat(bits);
}

// A device array of bf16 or float32 elements given as bits, poisoned with 0xFF bytes first.
class TypedBuffer {
 public:
  TypedBuffer(GemmElementType type, const std::vector<uint32_t>& bits)
      : type_(type), bytes_(bits.size() * (type == kBf16 ? 2 : 4)), buffer_(bytes_) {
    std::vector<uint8_t> host(bytes_);
    for (size_t i = 0; i < bits.size(); ++i) {
      if (type == kBf16) {
        const auto b = static_cast<uint16_t>(bits[i]);
        std::memcpy(host.data() + 2 * i, &b, 2);
      } else {
        std::memcpy(host.data() + 4 * i, &bits[i], 4);
      }
    }
    cudaMemcpy(buffer_.get(), host.data(), bytes_, cudaMemcpyHostToDevice);
  }
  void* at(int64_t element) const { return buffer_.get() + element * (type_ == kBf16 ? 2 : 4); }
  std::vector<uint32_t> ToHostBits() const {
    const std::vector<uint8_t> host = buffer_.ToHost();
    std::vector<uint32_t> bits(bytes_ / (type_ == kBf16 ? 2 : 4));
    for (size_t i = 0; i < bits.size(); ++i) {
      if (type_ == kBf16) {
        uint16_t b;
        std::memcpy(&b, host.data() + 2 * i, 2);
        bits[i] = b;
      } else {
        std::memcpy(&bits[i], host.data() + 4 * i, 4);
      }
    }
    return bits;
  }

 private:
  GemmElementType type_;
  size_t bytes_;
  DeviceBuffer<uint8_t> buffer_;
};

struct Shape {
  int64_t rows, cols;
};

TEST(BiasAddGpuTest, MatchesHostRoundingBitForBit) {
  FF_SKIP_WITHOUT_GPU();
  testing::SeededRng random;
  // Tiny; a GEMM-like tail; wider than one grid row of column blocks (1024 x 256 = 262144: the
  // column loop); more rows than the grid's 65535 (the row loop).
  const Shape shapes[] = {{1, 1}, {3, 7}, {37, 1001}, {5, 4096}, {2, 300001}, {70000, 3}};
  for (const Shape& shape : shapes) {
    for (const GemmElementType bias_type : {kBf16, kF32}) {
      for (const GemmElementType y_type : {kBf16, kF32}) {
        SCOPED_TRACE(absl::StrCat(shape.rows, " x ", shape.cols, ", bias ",
                                  bias_type == kBf16 ? "bf16" : "f32", ", y ",
                                  y_type == kBf16 ? "bf16" : "f32"));
        const int64_t rows = shape.rows, cols = shape.cols;
        // Odd strides and a one-element offset: nothing 16-byte aligned past the first row.
        const int64_t x_stride = cols + 3, y_stride = cols + 5, offset = 1;
        const std::vector<float> x = random.Gaussian(offset + rows * x_stride, 1.0f);
        std::vector<float> bias = random.Gaussian(offset + cols, 0.5f);
        if (bias_type == kBf16) bias = testing::Widen(testing::ToBf16(bias));
        DeviceBuffer<float> d_x(x);
        const TypedBuffer d_bias(bias_type, AsBits(bias, bias_type));
        const TypedBuffer d_y(y_type, std::vector<uint32_t>(offset + rows * y_stride, 0xffffffffu));
        const DeviceBiasAdd args{.rows = rows,
                                 .cols = cols,
                                 .x = d_x.get() + offset,
                                 .x_stride = x_stride,
                                 .bias = d_bias.at(offset),
                                 .bias_type = bias_type,
                                 .y = d_y.at(offset),
                                 .y_stride = y_stride,
                                 .y_type = y_type};
        const absl::Status status = AddBias(args, nullptr);
        ASSERT_TRUE(status.ok()) << status;
        FF_CUDA_ASSERT(cudaDeviceSynchronize());
        const std::vector<uint32_t> actual = d_y.ToHostBits();
        const uint32_t poison = y_type == kBf16 ? 0xffffu : 0xffffffffu;
        int64_t mismatches = 0, first = -1;
        for (int64_t i = 0; i < static_cast<int64_t>(actual.size()); ++i) {
          const int64_t r = (i - offset) / y_stride, c = (i - offset) % y_stride;
          uint32_t expected = poison;
          if (i >= offset && c < cols) {
            const float sum = x[offset + r * x_stride + c] + bias[offset + c];
            expected = AsBits({sum}, y_type)[0];
          }
          if (actual[i] != expected) {
            if (first < 0) first = i;
            ++mismatches;
          }
        }
        EXPECT_EQ(mismatches, 0) << "first at element " << first << ": got "
                                 << FromBits(actual[first < 0 ? 0 : first], y_type);
      }
    }
  }
}

TEST(BiasAddGpuTest, InPlaceFloat32) {
  FF_SKIP_WITHOUT_GPU();
  testing::SeededRng random;
  const int64_t rows = 9, cols = 999, stride = 1003;
  const std::vector<float> x = random.Gaussian(rows * stride, 1.0f);
  const std::vector<float> bias = random.Gaussian(cols, 0.5f);
  DeviceBuffer<float> d_xy(x), d_bias(bias);
  const DeviceBiasAdd args{.rows = rows,
                           .cols = cols,
                           .x = d_xy.get(),
                           .x_stride = stride,
                           .bias = d_bias.get(),
                           .bias_type = kF32,
                           .y = d_xy.get(),
                           .y_stride = stride,
                           .y_type = kF32};
  const absl::Status status = AddBias(args, nullptr);
  ASSERT_TRUE(status.ok()) << status;
  FF_CUDA_ASSERT(cudaDeviceSynchronize());
  const std::vector<float> actual = d_xy.ToHost();
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < stride; ++c) {
      const float expected = c < cols ? x[r * stride + c] + bias[c] : x[r * stride + c];
      ASSERT_EQ(testing::FloatBits(actual[r * stride + c]), testing::FloatBits(expected))
          << "row " << r << ", column " << c;
    }
  }
}

TEST(BiasAddGpuTest, RejectsBadArgumentsNamingTheField) {
  // Argument checks run before any device call: no GPU needed.
  float x = 0.0f, bias = 0.0f, y = 0.0f;
  const DeviceBiasAdd good{
      .rows = 1, .cols = 1, .x = &x, .bias = &bias, .bias_type = kF32, .y = &y, .y_type = kF32};
  const auto error_of = [](const DeviceBiasAdd& args) {
    return std::string(AddBias(args, nullptr).message());
  };
  DeviceBiasAdd bad = good;
  bad.rows = -1;
  EXPECT_THAT(error_of(bad), ::testing::HasSubstr("bad shape"));
  bad = good;
  bad.cols = 4;
  bad.x_stride = 3;
  EXPECT_THAT(error_of(bad), ::testing::HasSubstr("x_stride"));
  bad = good;
  bad.cols = 4;
  bad.y_stride = 3;
  EXPECT_THAT(error_of(bad), ::testing::HasSubstr("y_stride"));
  bad = good;
  bad.x = nullptr;
  EXPECT_THAT(error_of(bad), ::testing::HasSubstr("x is null"));
  bad = good;
  bad.bias = nullptr;
  EXPECT_THAT(error_of(bad), ::testing::HasSubstr("bias is null"));
  bad = good;
  bad.y = nullptr;
  EXPECT_THAT(error_of(bad), ::testing::HasSubstr("y is null"));
  bad = good;
  bad.y = &x;
  bad.y_type = kBf16;
  EXPECT_THAT(error_of(bad), ::testing::HasSubstr("in place"));
  bad = good;
  bad.rows = 0;
  bad.x = nullptr;
  EXPECT_TRUE(AddBias(bad, nullptr).ok()) << "rows = 0 is a no-op";
}

}  // namespace
}  // namespace flatfleet::cuda
