// FlatQuant's Kronecker transform on the GPU (kernels/cuda/kronecker_transform.h) against the CPU's
// FlatQuantInputTransform::ApplyToActivations on the same bf16-exact (or float32) rows, then the
// transformed rows' 4-bit codes with a learned clip ratio against the CPU's QuantizeRtn.
// Tolerance: 0. Every step (the float32 division by s, the double products and ascending sums of
// both factors, the rounding to float32) is the CPU's own IEEE operation, and the CPU file is built
// without FMA contraction, so y, the codes and the scales must be bit-exact.
#include "kernels/cuda/kronecker_transform.h"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/dtype.h"
#include "gtest/gtest.h"
#include "kernels/cpu/quant/kronecker_transform.h"  // KroneckerLeftFactor
#include "kernels/cpu/quant/rtn_quantizer.h"
#include "kernels/cuda/int8_activation_quantizer.h"
#include "quant/flat_quant_input_transform.h"
#include "tests/gpu/gpu_test_random.h"
#include "tests/gpu/gpu_test_util.h"
#include "tests/gpu/int8_quant_test_util.h"
#include "tests/gpu/transform_test_util.h"

namespace flatfleet::cuda {
namespace {

using testing::DeviceBuffer;

struct KroneckerCase {
  int64_t size;
  int64_t rows;
  int64_t expected_n1;  // KroneckerLeftFactor(size), what the trainer factors the layer into
  bool bf16_input = true;
};

class KroneckerTransformTest : public ::testing::TestWithParam<KroneckerCase> {};

TEST_P(KroneckerTransformTest, MatchesTheCpuTransformAndItsCodesBitForBit) {
  FF_SKIP_WITHOUT_GPU();
  const KroneckerCase c = GetParam();
  const uint64_t seed = testing::FreshSeed();
  SCOPED_TRACE(::testing::Message() << "FLATFLEET_TEST_SEED=" << seed);
  const int64_t n = c.size, n1 = quant::KroneckerLeftFactor(n), n2 = n / n1;
  ASSERT_EQ(n1, c.expected_n1);
  std::mt19937 rng(static_cast<uint32_t>(seed));
  const std::vector<float> scales = testing::RandomFlatQuantScales(n, rng);
  const float clip = 0.87f;
  auto transform = quant::FlatQuantInputTransform::Create(
      scales, n1, testing::RandomNearIdentityFactor(n1, rng), n2,
      testing::RandomNearIdentityFactor(n2, rng), clip, 1.0f);
  ASSERT_TRUE(transform.ok()) << transform.status();

  // Rows in a strided view (bf16 bits or float32); the CPU sees their exact float values.
  const std::vector<float> raw = testing::RandomActivations(c.rows, n, rng);
  const int64_t x_stride = n + 3, y_stride = n + 5;
  const testing::StridedBf16Rows bf16 = testing::MakeStridedBf16Rows(raw, c.rows, n, x_stride);
  const std::vector<uint16_t>& x_bits = bf16.bits;
  std::vector<float> x_floats(c.rows * x_stride, 1.0f);
  for (int64_t r = 0; r < c.rows; ++r) {
    for (int64_t i = 0; i < n; ++i) x_floats[r * x_stride + i] = raw[r * n + i];
  }
  const std::vector<float>& exact_inputs = c.bf16_input ? bf16.values : raw;
  std::vector<float> expected(c.rows * n);
  (*transform)->ApplyToActivations(exact_inputs, c.rows, expected);

  DeviceBuffer<uint16_t> d_x_bits(x_bits);
  DeviceBuffer<float> d_x_floats(x_floats);
  DeviceBuffer<float> d_y(std::vector<float>(c.rows * y_stride, std::nanf("")));  // poisoned
  DeviceBuffer<float> d_scales(scales);
  DeviceBuffer<float> d_p1((*transform)->p1());
  DeviceBuffer<float> d_p2((*transform)->p2());
  DeviceKroneckerRows args;
  args.x = c.bf16_input ? static_cast<const void*>(d_x_bits.get()) : d_x_floats.get();
  args.type = c.bf16_input ? ActivationType::kBfloat16 : ActivationType::kFloat32;
  args.rows = c.rows;
  args.x_stride = x_stride;
  args.n1 = n1;
  args.n2 = n2;
  args.divisors = d_scales.get();
  args.p1 = d_p1.get();
  args.p2 = d_p2.get();
  args.y = d_y.get();
  args.y_stride = y_stride;
  const absl::Status launched = ApplyKroneckerRows(args, nullptr);
  ASSERT_TRUE(launched.ok()) << launched;
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  const std::vector<float> y_strided = d_y.ToHost();

  int64_t differing = 0;
  for (int64_t r = 0; r < c.rows; ++r) {
    for (int64_t i = 0; i < n; ++i) {
      const float g = y_strided[r * y_stride + i], e = expected[r * n + i];
      ASSERT_TRUE(std::isfinite(g)) << "row " << r << " column " << i;
      if (std::memcmp(&g, &e, sizeof(g)) != 0 && differing++ < 5) {
        ADD_FAILURE() << "row " << r << " column " << i << ": " << g << " vs the CPU's " << e;
      }
    }
    for (int64_t i = n; i < y_stride; ++i) {
      ASSERT_TRUE(std::isnan(y_strided[r * y_stride + i])) << "row " << r << " pad " << i;
    }
  }
  ASSERT_EQ(differing, 0) << "of " << c.rows * n << " outputs";

  // The transformed rows' W4A4 codes with the learned clip, as the quantized layer runs them.
  DeviceBuffer<int8_t> d_codes(std::vector<int8_t>(c.rows * n, 0x5a));
  DeviceBuffer<uint16_t> d_code_scales(std::vector<uint16_t>(c.rows, 0xffff));
  DeviceActivationQuantization quantize;
  quantize.x = d_y.get();
  quantize.type = ActivationType::kFloat32;
  quantize.rows = c.rows;
  quantize.cols = n;
  quantize.x_stride = y_stride;
  quantize.clip_ratio = clip;
  quantize.codes = d_codes.get();
  quantize.scales = d_code_scales.get();
  quantize.qmax = 7;
  ASSERT_TRUE(QuantizeActivationsInt8(quantize, nullptr).ok());
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  const auto want =
      quant::QuantizeRtn(expected, c.rows, n, {.bits = 4, .symmetric = true, .clip_ratio = clip});
  ASSERT_TRUE(want.ok()) << want.status();
  EXPECT_EQ(d_codes.ToHost(), want->codes);
  EXPECT_EQ(d_code_scales.ToHost(), want->scales);
}

INSTANTIATE_TEST_SUITE_P(
    Sizes, KroneckerTransformTest,
    ::testing::Values(
        // stories260K (64 = 8 x 8, 172 = 4 x 43), llama-tiny (256 = 16 x 16, 688 = 16 x 43).
        KroneckerCase{64, 7, 8}, KroneckerCase{172, 9, 4}, KroneckerCase{256, 3, 16},
        KroneckerCase{688, 4, 16},
        // Llama-3-8B (4096 = 64 x 64, 14336 = 112 x 128), 70B (8192 = 64 x 128, 28672 =
        // 128 x 224: the widest row, the chunk of T shrinks to fit shared memory).
        KroneckerCase{4096, 5, 64}, KroneckerCase{14336, 3, 112}, KroneckerCase{8192, 2, 64},
        KroneckerCase{28672, 2, 128},
        // Enough rows that each block takes a whole row (the decode cases above split a row's
        // values of a over several blocks).
        KroneckerCase{4096, 300, 64}, KroneckerCase{688, 1100, 16},
        // A prime (1 x 43) and float32 input.
        KroneckerCase{43, 5, 1}, KroneckerCase{8192, 3, 64, /*bf16_input=*/false}),
    [](const ::testing::TestParamInfo<KroneckerCase>& info) {
      return absl::StrCat("n", info.param.size, "_rows", info.param.rows,
                          info.param.bf16_input ? "" : "_f32");
    });

TEST(KroneckerTransformArgsTest, RefusesBadArguments) {
  FF_SKIP_WITHOUT_GPU();
  DeviceBuffer<uint16_t> d_x(std::vector<uint16_t>(64, FloatToBF16(0.5f)));
  DeviceBuffer<float> d_y(64);
  DeviceBuffer<float> d_ones(std::vector<float>(64, 1.0f));
  DeviceKroneckerRows args;
  args.x = d_x.get();
  args.rows = 1;
  args.n1 = 8;
  args.n2 = 8;
  args.divisors = d_ones.get();
  args.p1 = d_ones.get();
  args.p2 = d_ones.get();
  args.y = d_y.get();
  EXPECT_TRUE(ApplyKroneckerRows(args, nullptr).ok());
  DeviceKroneckerRows bad = args;
  bad.n1 = 0;
  EXPECT_EQ(ApplyKroneckerRows(bad, nullptr).code(), absl::StatusCode::kInvalidArgument);
  bad = args;
  bad.p2 = nullptr;
  EXPECT_EQ(ApplyKroneckerRows(bad, nullptr).code(), absl::StatusCode::kInvalidArgument);
  bad = args;
  bad.y_stride = 63;  // narrower than a row
  EXPECT_EQ(ApplyKroneckerRows(bad, nullptr).code(), absl::StatusCode::kInvalidArgument);
  bad = args;
  bad.n1 = 256;  // 256 x 256 floats of row and 256^2 of P1: more shared memory than a block has
  bad.n2 = 256;
  EXPECT_EQ(ApplyKroneckerRows(bad, nullptr).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
}

TEST(KroneckerTransformArgsTest, SharedMemoryCoversEveryLlamaWidth) {
  // Host-only: the widest Llama-3 / Mixtral input (28672 = 128 x 224) fits.
  EXPECT_LE(KroneckerRowsMinSharedBytes(128, 224), kKroneckerMaxSharedBytes);
  EXPECT_GT(KroneckerRowsMinSharedBytes(256, 256), kKroneckerMaxSharedBytes);
}

}  // namespace
}  // namespace flatfleet::cuda
