// The GPU per-token INT8 quantizer against the CPU RTN reference
// (kernels/cpu/quant/rtn_quantizer.h): codes and FP16 scales must be identical.
#include "kernels/cuda/int8_activation_quantizer.h"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "kernels/cpu/quant/rtn_quantizer.h"
#include "tests/gpu/gpu_test_util.h"
#include "tests/gpu/int8_quant_test_util.h"

namespace flatfleet::cuda {
namespace {

using testing::BitwiseEqual;
using testing::DeviceBuffer;

uint16_t FloatToBfloat16(float value) {  // round to nearest even (finite inputs)
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof(bits));
  return static_cast<uint16_t>((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16);
}

float Bfloat16ToFloat(uint16_t bits) {
  const uint32_t wide = static_cast<uint32_t>(bits) << 16;
  float value;
  std::memcpy(&value, &wide, sizeof(value));
  return value;
}

struct QuantizedOnGpu {
  std::vector<int8_t> codes;
  std::vector<uint16_t> scales;
  int32_t status = 0;
};

// Runs the GPU quantizer on host data (float32 values or bfloat16 bits).
template <typename T>
QuantizedOnGpu QuantizeOnGpu(const std::vector<T>& x, ActivationType type, int64_t rows,
                             int64_t cols, float clip_ratio) {
  DeviceBuffer<T> d_x(x);
  DeviceBuffer<int8_t> d_codes(rows * cols);
  DeviceBuffer<uint16_t> d_scales(rows);
  DeviceBuffer<int32_t> d_status(std::vector<int32_t>{0});
  DeviceActivationQuantization args{.x = d_x.get(),
                                    .type = type,
                                    .rows = rows,
                                    .cols = cols,
                                    .clip_ratio = clip_ratio,
                                    .codes = d_codes.get(),
                                    .scales = d_scales.get(),
                                    .status = d_status.get()};
  const absl::Status status = QuantizeActivationsInt8(args, nullptr);
  EXPECT_TRUE(status.ok()) << status;
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  return {d_codes.ToHost(), d_scales.ToHost(), d_status.ToHost()[0]};
}

struct Shape {
  int64_t rows;
  int64_t cols;
  float clip_ratio;
};

class Int8ActivationQuantizerGpuTest : public ::testing::TestWithParam<Shape> {};

TEST_P(Int8ActivationQuantizerGpuTest, Float32MatchesCpuBitExactly) {
  FF_SKIP_WITHOUT_GPU();
  const auto [rows, cols, clip] = GetParam();
  std::mt19937 rng(static_cast<uint32_t>(rows * 7919 + cols));
  const std::vector<float> x = testing::RandomActivations(rows, cols, rng);
  const auto expected =
      quant::QuantizeRtn(x, rows, cols, {.bits = 8, .symmetric = true, .clip_ratio = clip});
  ASSERT_TRUE(expected.ok()) << expected.status();
  const QuantizedOnGpu actual = QuantizeOnGpu(x, ActivationType::kFloat32, rows, cols, clip);
  EXPECT_EQ(actual.status, 0);
  EXPECT_TRUE(BitwiseEqual(expected->scales, actual.scales));
  EXPECT_TRUE(BitwiseEqual(expected->codes, actual.codes));
}

TEST_P(Int8ActivationQuantizerGpuTest, Bfloat16MatchesCpuOnWidenedValues) {
  FF_SKIP_WITHOUT_GPU();
  const auto [rows, cols, clip] = GetParam();
  std::mt19937 rng(static_cast<uint32_t>(rows * 104729 + cols));
  const std::vector<float> x = testing::RandomActivations(rows, cols, rng);
  std::vector<uint16_t> x_bf16(x.size());
  std::vector<float> widened(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    x_bf16[i] = FloatToBfloat16(x[i]);
    widened[i] = Bfloat16ToFloat(x_bf16[i]);
  }
  const auto expected =
      quant::QuantizeRtn(widened, rows, cols, {.bits = 8, .symmetric = true, .clip_ratio = clip});
  ASSERT_TRUE(expected.ok()) << expected.status();
  const QuantizedOnGpu actual = QuantizeOnGpu(x_bf16, ActivationType::kBfloat16, rows, cols, clip);
  EXPECT_EQ(actual.status, 0);
  EXPECT_TRUE(BitwiseEqual(expected->scales, actual.scales));
  EXPECT_TRUE(BitwiseEqual(expected->codes, actual.codes));
}

INSTANTIATE_TEST_SUITE_P(Shapes, Int8ActivationQuantizerGpuTest,
                         ::testing::Values(Shape{1, 64, 1.0f}, Shape{7, 4096, 1.0f},
                                           Shape{33, 1000, 1.0f}, Shape{3, 16384, 1.0f},
                                           Shape{16, 8192, 1.0f}, Shape{5, 333, 0.85f},
                                           Shape{64, 256, 0.5f}));

TEST(Int8ActivationQuantizerGpuTest, TinyZeroAndHalfwayRowsMatchCpu) {
  FF_SKIP_WITHOUT_GPU();
  const int64_t rows = 4, cols = 96;
  std::mt19937 rng(5);
  std::vector<float> x = testing::RandomActivations(rows, cols, rng);
  for (int64_t c = 0; c < cols; ++c) {
    x[0 * cols + c] *= 1e-7f;  // the scale lands among FP16 subnormals
    x[1 * cols + c] = 0.0f;    // all-zero row: scale 1, codes 0
    x[2 * cols + c] = static_cast<float>(c % 9 - 4) * 0.5f;  // many exact halfway quotients
  }
  const auto expected = quant::QuantizeRtn(x, rows, cols, {.bits = 8, .symmetric = true});
  ASSERT_TRUE(expected.ok()) << expected.status();
  const QuantizedOnGpu actual = QuantizeOnGpu(x, ActivationType::kFloat32, rows, cols, 1.0f);
  EXPECT_EQ(actual.status, 0);
  EXPECT_EQ(actual.scales[1], 0x3c00);
  EXPECT_TRUE(BitwiseEqual(expected->scales, actual.scales));
  EXPECT_TRUE(BitwiseEqual(expected->codes, actual.codes));
}

TEST(Int8ActivationQuantizerGpuTest, FlagsRowsTheCpuRejects) {
  FF_SKIP_WITHOUT_GPU();
  const int64_t rows = 3, cols = 64;
  std::mt19937 rng(9);
  std::vector<float> x = testing::RandomActivations(rows, cols, rng);
  x[0 * cols + 10] = std::numeric_limits<float>::quiet_NaN();
  x[2 * cols + 3] = 1e7f;  // 1e7 / 127 is beyond the FP16 range
  std::vector<float> nan_row(x.begin(), x.begin() + cols), big_row(x.begin() + 2 * cols, x.end());
  EXPECT_FALSE(quant::QuantizeRtn(nan_row, 1, cols, {.bits = 8}).ok());
  EXPECT_FALSE(quant::QuantizeRtn(big_row, 1, cols, {.bits = 8}).ok());
  const QuantizedOnGpu actual = QuantizeOnGpu(x, ActivationType::kFloat32, rows, cols, 1.0f);
  EXPECT_EQ(actual.status, kQuantizeNonFiniteInput | kQuantizeScaleOverflow);
  EXPECT_EQ(actual.scales[0], 0x7c00);
  EXPECT_EQ(actual.scales[2], 0x7c00);
  // The healthy row is still quantized like the reference.
  std::vector<float> good_row(x.begin() + cols, x.begin() + 2 * cols);
  const auto expected = quant::QuantizeRtn(good_row, 1, cols, {.bits = 8});
  ASSERT_TRUE(expected.ok());
  EXPECT_EQ(actual.scales[1], expected->scales[0]);
  EXPECT_TRUE(BitwiseEqual(expected->codes, std::vector<int8_t>(actual.codes.begin() + cols,
                                                                actual.codes.begin() + 2 * cols)));
}

// Argument checks run on the host: these need no GPU.
TEST(Int8ActivationQuantizerArgsTest, RejectsBadArguments) {
  int8_t codes[16];
  uint16_t scales[1];
  float x[16] = {};
  DeviceActivationQuantization args{
      .x = x, .rows = 1, .cols = 16, .codes = codes, .scales = scales};
  args.clip_ratio = 0.0f;
  EXPECT_EQ(QuantizeActivationsInt8(args, nullptr).code(), absl::StatusCode::kInvalidArgument);
  args.clip_ratio = 1.0f;
  args.cols = 0;
  EXPECT_EQ(QuantizeActivationsInt8(args, nullptr).code(), absl::StatusCode::kInvalidArgument);
  args.cols = 16;
  args.codes = nullptr;
  const absl::Status status = QuantizeActivationsInt8(args, nullptr);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("codes"), std::string::npos) << status;
}

}  // namespace
}  // namespace flatfleet::cuda
