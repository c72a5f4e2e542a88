// The GPU W8A8 and W4A8 GEMMs against the CPU reference (kernels/cpu/quant/quantized_gemm.h):
// integer group sums identical, float outputs identical bit for bit (same epilogue order).
#include "kernels/cuda/int8_gemm.h"

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kernels/cpu/quant/packed_int4_matrix.h"
#include "kernels/cpu/quant/quantized_gemm.h"
#include "kernels/cpu/quant/rtn_quantizer.h"
#include "kernels/cuda/int8_activation_quantizer.h"
#include "tests/gpu/gpu_test_util.h"
#include "tests/gpu/int8_quant_test_util.h"

namespace flatfleet::cuda {
namespace {

using testing::BitwiseEqual;
using testing::DeviceBuffer;

constexpr quant::QuantFormat kPerTokenInt8{.bits = 8, .symmetric = true, .group_size = 0};

quant::QuantizedMatrix Quantize(const std::vector<float>& values, int64_t rows, int64_t cols,
                                const quant::QuantFormat& format) {
  auto quantized = quant::QuantizeRtn(values, rows, cols, format);
  EXPECT_TRUE(quantized.ok()) << quantized.status();
  return *std::move(quantized);
}

// Weights: Gaussian rows with per-row magnitudes, like a linear layer's output channels.
std::vector<float> RandomWeights(int64_t rows, int64_t cols, std::mt19937& rng) {
  std::normal_distribution<float> normal(0.0f, 0.02f);
  std::uniform_real_distribution<float> row_scale(0.5f, 2.0f);
  std::vector<float> values(rows * cols);
  for (int64_t r = 0; r < rows; ++r) {
    const float scale = row_scale(rng);
    for (int64_t c = 0; c < cols; ++c) values[r * cols + c] = scale * normal(rng);
  }
  return values;
}

struct GemmShape {
  int64_t m, n, k;
};

std::string ShapeName(const GemmShape& s) { return absl::StrCat("m", s.m, "_n", s.n, "_k", s.k); }

class W8A8GemmGpuTest : public ::testing::TestWithParam<GemmShape> {};

TEST_P(W8A8GemmGpuTest, MatchesCpuReferenceBitExactly) {
  FF_SKIP_WITHOUT_GPU();
  const auto [m, n, k] = GetParam();
  std::mt19937 rng(static_cast<uint32_t>(m * 1000003 + n * 1009 + k));
  const auto x = Quantize(testing::RandomActivations(m, k, rng), m, k, kPerTokenInt8);
  const auto w = Quantize(RandomWeights(n, k, rng), n, k, kPerTokenInt8);
  const auto expected = quant::GemmW8A8(x, w);
  ASSERT_TRUE(expected.ok()) << expected.status();

  DeviceBuffer<int8_t> d_x(x.codes), d_w(w.codes);
  DeviceBuffer<uint16_t> d_xs(x.scales), d_ws(w.scales);
  DeviceBuffer<float> d_y(m * n);
  DeviceBuffer<int32_t> d_acc(m * n);
  const absl::Status status = GemmW8A8({.m = m,
                                        .n = n,
                                        .k = k,
                                        .x_codes = d_x.get(),
                                        .x_scales = d_xs.get(),
                                        .w_codes = d_w.get(),
                                        .w_scales = d_ws.get(),
                                        .y = d_y.get(),
                                        .accumulators = d_acc.get()},
                                       nullptr);
  ASSERT_TRUE(status.ok()) << status;
  FF_CUDA_ASSERT(cudaDeviceSynchronize());
  EXPECT_TRUE(BitwiseEqual(expected->group_accumulators, d_acc.ToHost()));
  EXPECT_TRUE(BitwiseEqual(expected->output, d_y.ToHost()));
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, W8A8GemmGpuTest,
    ::testing::Values(
        // Decode-like (m <= 16 tiles), with N and K tails (k = 48: a half k32 step).
        GemmShape{1, 64, 256}, GemmShape{1, 1000, 4096}, GemmShape{2, 72, 512},
        GemmShape{3, 130, 48}, GemmShape{5, 257, 1040}, GemmShape{8, 128, 16},
        GemmShape{13, 200, 4096}, GemmShape{16, 1000, 2048},
        // Medium tiles (m <= 256).
        GemmShape{17, 64, 256}, GemmShape{64, 128, 512}, GemmShape{100, 333, 784},
        GemmShape{256, 256, 1024},
        // Large tiles.
        GemmShape{257, 130, 272}, GemmShape{300, 520, 1536}, GemmShape{512, 512, 4096}),
    [](const auto& info) { return ShapeName(info.param); });

struct W4A8Case {
  int64_t m, n, k, group_size;
  bool zero_points;
};

class W4A8GemmGpuTest : public ::testing::TestWithParam<W4A8Case> {};

TEST_P(W4A8GemmGpuTest, MatchesCpuReferenceBitExactly) {
  FF_SKIP_WITHOUT_GPU();
  const auto [m, n, k, group_size, zero_points] = GetParam();
  std::mt19937 rng(static_cast<uint32_t>(m * 1000003 + n * 1009 + k * 7 + group_size));
  const auto x = Quantize(testing::RandomActivations(m, k, rng), m, k, kPerTokenInt8);
  const auto w = Quantize(
      RandomWeights(n, k, rng), n, k,
      {.bits = 4, .symmetric = !zero_points, .group_size = group_size == k ? 0 : group_size});
  const auto expected = quant::GemmW4A8(x, w);
  ASSERT_TRUE(expected.ok()) << expected.status();
  const auto packed = quant::PackInt4Matrix(w);
  ASSERT_TRUE(packed.ok()) << packed.status();
  const int64_t groups = k / group_size;

  DeviceBuffer<int8_t> d_x(x.codes);
  DeviceBuffer<uint32_t> d_w(packed->words);
  DeviceBuffer<uint16_t> d_xs(x.scales), d_ws(w.scales);
  DeviceBuffer<int8_t> d_zeros(zero_points ? w.zero_points : std::vector<int8_t>{0});
  DeviceBuffer<float> d_y(m * n);
  DeviceBuffer<int32_t> d_acc(m * n * groups);
  const absl::Status status =
      GemmW4A8({.m = m,
                .n = n,
                .k = k,
                .group_size = group_size,
                .x_codes = d_x.get(),
                .x_scales = d_xs.get(),
                .w_words = d_w.get(),
                .w_unsigned_nibbles = packed->signedness == quant::Signedness::kUnsigned,
                .w_scales = d_ws.get(),
                .w_zero_points = zero_points ? d_zeros.get() : nullptr,
                .y = d_y.get(),
                .group_accumulators = d_acc.get()},
               nullptr);
  ASSERT_TRUE(status.ok()) << status;
  FF_CUDA_ASSERT(cudaDeviceSynchronize());
  EXPECT_TRUE(BitwiseEqual(expected->group_accumulators, d_acc.ToHost()));
  EXPECT_TRUE(BitwiseEqual(expected->output, d_y.ToHost()));
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, W4A8GemmGpuTest,
    ::testing::Values(W4A8Case{1, 64, 256, 128, false}, W4A8Case{1, 64, 256, 128, true},
                      W4A8Case{1, 1000, 4096, 128, false}, W4A8Case{4, 96, 512, 32, true},
                      W4A8Case{7, 130, 1024, 64, false}, W4A8Case{9, 80, 320, 320, true},
                      W4A8Case{16, 257, 2048, 128, true}, W4A8Case{31, 200, 768, 256, false},
                      W4A8Case{100, 72, 1024, 128, true}, W4A8Case{200, 136, 96, 32, false},
                      W4A8Case{257, 300, 512, 128, true}, W4A8Case{300, 256, 4096, 128, false},
                      W4A8Case{512, 384, 2048, 64, true}),
    [](const auto& info) {
      const W4A8Case& c = info.param;
      return absl::StrCat(ShapeName({c.m, c.n, c.k}), "_g", c.group_size,
                          c.zero_points ? "_zp" : "_sym");
    });

// The whole activation path on the GPU: float32 activations quantized per token on
// the device, then W4A8, against the CPU quantizer + CPU GEMM.
TEST(W4A8GemmGpuTest, QuantizeThenGemmMatchesCpuPipeline) {
  FF_SKIP_WITHOUT_GPU();
  const int64_t m = 11, n = 192, k = 1024, group_size = 128;
  std::mt19937 rng(77);
  const std::vector<float> x_float = testing::RandomActivations(m, k, rng);
  const auto x = Quantize(x_float, m, k, kPerTokenInt8);
  const auto w = Quantize(RandomWeights(n, k, rng), n, k,
                          {.bits = 4, .symmetric = true, .group_size = group_size});
  const auto expected = quant::GemmW4A8(x, w);
  ASSERT_TRUE(expected.ok()) << expected.status();
  const auto packed = quant::PackInt4Matrix(w);
  ASSERT_TRUE(packed.ok()) << packed.status();

  DeviceBuffer<float> d_x_float(x_float);
  DeviceBuffer<int8_t> d_x(m * k);
  DeviceBuffer<uint16_t> d_xs(m), d_ws(w.scales);
  DeviceBuffer<uint32_t> d_w(packed->words);
  DeviceBuffer<float> d_y(m * n);
  ASSERT_TRUE(
      QuantizeActivationsInt8(
          {.x = d_x_float.get(), .rows = m, .cols = k, .codes = d_x.get(), .scales = d_xs.get()},
          nullptr)
          .ok());
  ASSERT_TRUE(GemmW4A8({.m = m,
                        .n = n,
                        .k = k,
                        .group_size = group_size,
                        .x_codes = d_x.get(),
                        .x_scales = d_xs.get(),
                        .w_words = d_w.get(),
                        .w_scales = d_ws.get(),
                        .y = d_y.get()},
                       nullptr)
                  .ok());
  FF_CUDA_ASSERT(cudaDeviceSynchronize());
  EXPECT_TRUE(BitwiseEqual(x.codes, d_x.ToHost()));
  EXPECT_TRUE(BitwiseEqual(expected->output, d_y.ToHost()));
}

// Argument checks run on the host before any launch: these need no GPU. Fake, never
// dereferenced, 16-byte aligned addresses stand in for device buffers.
template <typename T>
T* FakeDevicePointer(uintptr_t offset = 0) {
  return reinterpret_cast<T*>(uintptr_t{1} << 20 | offset);
}

DeviceW8A8Gemm ValidW8A8() {
  return {.m = 4,
          .n = 64,
          .k = 256,
          .x_codes = FakeDevicePointer<int8_t>(),
          .x_scales = FakeDevicePointer<uint16_t>(),
          .w_codes = FakeDevicePointer<int8_t>(),
          .w_scales = FakeDevicePointer<uint16_t>(),
          .y = FakeDevicePointer<float>()};
}

::testing::AssertionResult FailsMentioning(const absl::Status& status, absl::StatusCode code,
                                           const std::string& text) {
  if (status.code() == code && std::string(status.message()).find(text) != std::string::npos) {
    return ::testing::AssertionSuccess();
  }
  return ::testing::AssertionFailure() << "got " << status;
}

TEST(Int8GemmArgsTest, W8A8RejectsShapesItCannotRun) {
  auto args = ValidW8A8();
  args.k = 50;
  EXPECT_TRUE(FailsMentioning(GemmW8A8(args, nullptr), absl::StatusCode::kInvalidArgument,
                              "multiple of 16"));
  args.k = 133152;  // 133152 * 127 * 127 > 2^31 - 1
  EXPECT_TRUE(FailsMentioning(GemmW8A8(args, nullptr), absl::StatusCode::kOutOfRange, "overflow"));
  args = ValidW8A8();
  args.x_codes = FakeDevicePointer<int8_t>(4);
  EXPECT_TRUE(FailsMentioning(GemmW8A8(args, nullptr), absl::StatusCode::kInvalidArgument,
                              "x_codes must be 16-byte aligned"));
  args = ValidW8A8();
  args.w_scales = nullptr;
  EXPECT_TRUE(FailsMentioning(GemmW8A8(args, nullptr), absl::StatusCode::kInvalidArgument,
                              "w_scales is null"));
}

TEST(Int8GemmArgsTest, W4A8RejectsGroupsAndShapesItCannotRun) {
  DeviceW4A8Gemm args{.m = 3,
                      .n = 64,
                      .k = 512,
                      .group_size = 48,
                      .x_codes = FakeDevicePointer<int8_t>(),
                      .x_scales = FakeDevicePointer<uint16_t>(),
                      .w_words = FakeDevicePointer<uint32_t>(),
                      .w_scales = FakeDevicePointer<uint16_t>(),
                      .y = FakeDevicePointer<float>()};
  EXPECT_TRUE(
      FailsMentioning(GemmW4A8(args, nullptr), absl::StatusCode::kInvalidArgument, "group_size"));
  args.group_size = 128;
  args.k = 496;  // a multiple of 16 but not of 32
  EXPECT_TRUE(FailsMentioning(GemmW4A8(args, nullptr), absl::StatusCode::kInvalidArgument,
                              "multiple of 32"));
  args.k = 512;
  args.w_words = nullptr;
  EXPECT_TRUE(FailsMentioning(GemmW4A8(args, nullptr), absl::StatusCode::kInvalidArgument,
                              "w_words is null"));
}

}  // namespace
}  // namespace flatfleet::cuda
