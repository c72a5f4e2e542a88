// The INT8 dequantising epilogue (kernels/cuda/int8_dequant_epilogue.h) against the CPU
// reference's arithmetic (quant::QuantizedGemm with one group, then the bias in float32):
// bit-exact in float32, and bf16 outputs rounded once from it. Argument checks need no GPU.
#include "kernels/cuda/int8_dequant_epilogue.h"

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "common/dtype.h"
#include "gtest/gtest.h"
#include "tests/gpu/gpu_test_random.h"
#include "tests/gpu/gpu_test_util.h"

namespace flatfleet::cuda {
namespace {

using testing::DeviceBuffer;

TEST(Int8DequantEpilogueTest, MatchesTheReferenceArithmetic) {
  FF_SKIP_WITHOUT_GPU();
  const uint64_t seed = testing::FreshSeed();
  SCOPED_TRACE(::testing::Message() << "FLATFLEET_TEST_SEED=" << seed);
  std::mt19937_64 rng(seed);
  const int64_t rows = 37, cols = 301, y_stride = 305;
  std::uniform_int_distribution<int32_t> sum(-2000000000, 2000000000);
  std::uniform_real_distribution<float> scale(1e-4f, 2e-2f), add(-3.0f, 3.0f);
  std::vector<int32_t> sums(rows * cols);
  for (int32_t& s : sums) s = sum(rng);
  std::vector<uint16_t> xs(rows), ws(cols);
  for (uint16_t& s : xs) s = FloatToHalf(scale(rng));
  for (uint16_t& s : ws) s = FloatToHalf(scale(rng));
  std::vector<float> adds(cols);
  for (float& a : adds) a = add(rng);

  DeviceBuffer<int32_t> d_sums(sums);
  DeviceBuffer<uint16_t> d_xs(xs), d_ws(ws);
  DeviceBuffer<float> d_add(adds), d_y32(rows * y_stride);
  DeviceBuffer<uint16_t> d_y16(rows * y_stride);
  FF_CUDA_ASSERT(cudaMemset(d_y32.get(), 0xFF, rows * y_stride * 4));
  FF_CUDA_ASSERT(cudaMemset(d_y16.get(), 0xFF, rows * y_stride * 2));
  DeviceInt8DequantEpilogue args{.rows = rows,
                                 .cols = cols,
                                 .sums = d_sums.get(),
                                 .x_scales = d_xs.get(),
                                 .w_scales = d_ws.get(),
                                 .add = d_add.get(),
                                 .y = d_y32.get(),
                                 .y_stride = y_stride,
                                 .y_type = GemmElementType::kFloat32};
  ASSERT_TRUE(Int8DequantEpilogue(args, nullptr).ok());
  args.y = d_y16.get();
  args.y_type = GemmElementType::kBf16;
  ASSERT_TRUE(Int8DequantEpilogue(args, nullptr).ok());
  FF_CUDA_ASSERT(cudaDeviceSynchronize());
  const std::vector<float> y32 = d_y32.ToHost();
  const std::vector<uint16_t> y16 = d_y16.ToHost();
  int64_t mismatches = 0;
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t j = 0; j < cols; ++j) {
      // The reference: partial = fma(float(acc), w_scale, 0) (= one rounded product), times the
      // activation scale, plus the bias, each rounded (volatile keeps the host from fusing).
      volatile float product = static_cast<float>(sums[r * cols + j]) * HalfToFloat(ws[j]);
      volatile float scaled = product * HalfToFloat(xs[r]);
      const float want = scaled + adds[j];
      mismatches += std::memcmp(&y32[r * y_stride + j], &want, 4) != 0;
      mismatches += y16[r * y_stride + j] != FloatToBF16(want);
    }
    EXPECT_TRUE(std::isnan(y32[r * y_stride + cols])) << "row padding written";
  }
  EXPECT_EQ(mismatches, 0);
}

TEST(Int8DequantEpilogueArgsTest, RejectsBadArguments) {
  const int32_t* fake = reinterpret_cast<const int32_t*>(uintptr_t{1} << 20);
  DeviceInt8DequantEpilogue args{.rows = 2, .cols = 4, .sums = fake};
  EXPECT_EQ(Int8DequantEpilogue(args, nullptr).code(), absl::StatusCode::kInvalidArgument);
  args.rows = -1;
  EXPECT_EQ(Int8DequantEpilogue(args, nullptr).code(), absl::StatusCode::kInvalidArgument);
  args.rows = 2;
  args.x_scales = args.w_scales = reinterpret_cast<const uint16_t*>(fake);
  args.y = reinterpret_cast<void*>(uintptr_t{1} << 21);
  args.y_stride = 3;  // below cols
  const absl::Status status = Int8DequantEpilogue(args, nullptr);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("y_stride"), std::string::npos) << status;
}

}  // namespace
}  // namespace flatfleet::cuda
