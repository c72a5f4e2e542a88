// The randomized Hadamard rotation on the GPU (kernels/cuda/hadamard_transform.h) against the CPU
// RandomizedHadamard::ApplyToActivationRows on the same bf16-exact rows, then the rotated rows'
// 4-bit and 8-bit codes against the CPU's QuantizeRtn.
// Tolerances: power-of-two sizes (no block): 0, every step is the CPU's IEEE operation. Sizes with
// a Paley or random block (m > 1): each float32 output within one ulp of the CPU's, because the
// CPU build (x86-64-v3) may fuse some of the block product's multiply-adds into FMAs where the
// kernel rounds each product, which moves the double sum by its last bits and can move the float
// rounding by one ulp; codes (and scales) are then identical except at an element (or a row,
// for the scale) whose float differs, where a code may move by one step (the tie rule).
#include "kernels/cuda/hadamard_transform.h"

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/dtype.h"
#include "gtest/gtest.h"
#include "kernels/cpu/quant/hadamard.h"
#include "kernels/cpu/quant/rtn_quantizer.h"
#include "kernels/cuda/int8_activation_quantizer.h"
#include "tests/gpu/gpu_test_random.h"
#include "tests/gpu/gpu_test_util.h"
#include "tests/gpu/int8_quant_test_util.h"
#include "tests/gpu/transform_test_util.h"

namespace flatfleet::cuda {
namespace {

using testing::DeviceBuffer;

struct HadamardCase {
  int64_t size;
  int64_t rows;
  int64_t expected_block;  // the CPU's block size m for this size
};

// Distance in float32 ulps between two finite floats of the same sign (or both near zero).
int64_t FloatUlps(float a, float b) {
  auto ordinal = [](float v) -> int64_t {
    int32_t bits;
    std::memcpy(&bits, &v, sizeof(bits));
    return bits < 0 ? -static_cast<int64_t>(bits & 0x7fffffff) : bits;
  };
  return std::llabs(ordinal(a) - ordinal(b));
}

class HadamardTransformTest : public ::testing::TestWithParam<HadamardCase> {};

TEST_P(HadamardTransformTest, MatchesTheCpuRotationAndItsCodes) {
  FF_SKIP_WITHOUT_GPU();
  const HadamardCase c = GetParam();
  const uint64_t seed = testing::FreshSeed();
  SCOPED_TRACE(::testing::Message() << "FLATFLEET_TEST_SEED=" << seed);
  auto rotation = quant::RandomizedHadamard::Create(c.size, seed);
  ASSERT_TRUE(rotation.ok()) << rotation.status();
  ASSERT_EQ(rotation->block_size(), c.expected_block);
  const int64_t n = c.size, p = rotation->power_of_two(), m = rotation->block_size();

  // bf16 rows in a strided view; the CPU sees their exact float values.
  std::mt19937 rng(static_cast<uint32_t>(seed));
  const std::vector<float> raw = testing::RandomActivations(c.rows, n, rng);
  const int64_t x_stride = n + 3, y_stride = n + 5;
  const testing::StridedBf16Rows bf16 = testing::MakeStridedBf16Rows(raw, c.rows, n, x_stride);
  const std::vector<uint16_t>& x_bits = bf16.bits;
  std::vector<float> expected = bf16.values;
  rotation->ApplyToActivationRows(expected, c.rows);

  DeviceBuffer<uint16_t> d_x(x_bits);
  DeviceBuffer<float> d_y(std::vector<float>(c.rows * y_stride, std::nanf("")));  // poisoned
  DeviceBuffer<double> d_signs(rotation->signs());
  DeviceBuffer<double> d_block(rotation->block());
  DeviceHadamardRows args;
  args.x = d_x.get();
  args.type = ActivationType::kBfloat16;
  args.rows = c.rows;
  args.x_stride = x_stride;
  args.power_of_two = p;
  args.block_size = m;
  args.signs = d_signs.get();
  args.block = d_block.get();
  args.norm = 1.0 / std::sqrt(static_cast<double>(p));
  args.y = d_y.get();
  args.y_stride = y_stride;
  const absl::Status launched = ApplyHadamardRows(args, nullptr);
  ASSERT_TRUE(launched.ok()) << launched;
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  const std::vector<float> y_strided = d_y.ToHost();

  std::vector<float> got(c.rows * n);
  int64_t differing = 0, worst_ulps = 0;
  for (int64_t r = 0; r < c.rows; ++r) {
    for (int64_t i = 0; i < n; ++i) {
      const float g = y_strided[r * y_stride + i], e = expected[r * n + i];
      got[r * n + i] = g;
      ASSERT_TRUE(std::isfinite(g)) << "row " << r << " column " << i;
      const int64_t ulps = FloatUlps(g, e);
      differing += ulps != 0;
      worst_ulps = std::max(worst_ulps, ulps);
    }
    for (int64_t i = n; i < y_stride; ++i) EXPECT_TRUE(std::isnan(y_strided[r * y_stride + i]));
  }
  if (m == 1) {
    EXPECT_EQ(differing, 0) << "power-of-two rotation must be bit-exact (worst " << worst_ulps
                            << " ulps)";
  } else {
    EXPECT_LE(worst_ulps, 1) << differing << " of " << c.rows * n << " outputs differ";
  }

  // The rotated rows' codes: the GPU quantizer on the GPU's floats against the CPU's QuantizeRtn
  // on the CPU's floats, under the tie rule above.
  for (int bits : {4, 8}) {
    SCOPED_TRACE(::testing::Message() << bits << "-bit codes");
    DeviceBuffer<int8_t> d_codes(std::vector<int8_t>(c.rows * n, 0x5a));
    DeviceBuffer<uint16_t> d_scales(std::vector<uint16_t>(c.rows, 0xffff));
    DeviceActivationQuantization quantize;
    quantize.x = d_y.get();
    quantize.type = ActivationType::kFloat32;
    quantize.rows = c.rows;
    quantize.cols = n;
    quantize.x_stride = y_stride;
    quantize.codes = d_codes.get();
    quantize.scales = d_scales.get();
    quantize.qmax = (1 << (bits - 1)) - 1;
    ASSERT_TRUE(QuantizeActivationsInt8(quantize, nullptr).ok());
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    const auto want = quant::QuantizeRtn(expected, c.rows, n, {.bits = bits, .symmetric = true});
    ASSERT_TRUE(want.ok()) << want.status();
    const std::vector<int8_t> codes = d_codes.ToHost();
    const std::vector<uint16_t> scales = d_scales.ToHost();
    for (int64_t r = 0; r < c.rows; ++r) {
      bool row_differs = false;
      for (int64_t i = 0; i < n; ++i) row_differs |= got[r * n + i] != expected[r * n + i];
      if (scales[r] != want->scales[r]) {
        ASSERT_TRUE(row_differs) << "row " << r << ": scale differs on identical floats";
        continue;  // a different scale (its max moved by one ulp) requantizes the whole row
      }
      for (int64_t i = 0; i < n; ++i) {
        const int diff = codes[r * n + i] - want->codes[r * n + i];
        if (diff == 0) continue;
        ASSERT_NE(got[r * n + i], expected[r * n + i])
            << "row " << r << " column " << i << ": code differs on an identical float";
        ASSERT_EQ(std::abs(diff), 1) << "row " << r << " column " << i;
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Sizes, HadamardTransformTest,
    ::testing::Values(
        // Powers of two (bit-exact): stories260K's 64, the fixtures' 256, Llama-3's 4096 / 8192.
        HadamardCase{64, 7, 1}, HadamardCase{256, 3, 1}, HadamardCase{4096, 5, 1},
        HadamardCase{8192, 2, 1},
        // A random odd block: stories260K's 172 and llama-tiny's 688 (43), Llama-3-8B's 14336 and
        // 70B's 28672 (7, the widest row the kernel holds), Llama-2's 11008 (43), odd 43 alone.
        HadamardCase{172, 9, 43}, HadamardCase{688, 4, 43}, HadamardCase{14336, 3, 7},
        HadamardCase{28672, 2, 7}, HadamardCase{11008, 2, 43}, HadamardCase{43, 5, 43},
        // Paley blocks of order 12: 96 = 8 x 12, 3072 = 256 x 12.
        HadamardCase{96, 6, 12}, HadamardCase{3072, 3, 12}),
    [](const ::testing::TestParamInfo<HadamardCase>& info) {
      return absl::StrCat("n", info.param.size, "_rows", info.param.rows);
    });

TEST(HadamardTransformArgsTest, RefusesBadArguments) {
  FF_SKIP_WITHOUT_GPU();
  DeviceBuffer<uint16_t> d_x(std::vector<uint16_t>(64, 0));
  DeviceBuffer<float> d_y(64);
  DeviceBuffer<double> d_signs(std::vector<double>(64, 1.0));
  DeviceHadamardRows args;
  args.x = d_x.get();
  args.rows = 1;
  args.power_of_two = 64;
  args.signs = d_signs.get();
  args.norm = 0.125;
  args.y = d_y.get();
  EXPECT_TRUE(ApplyHadamardRows(args, nullptr).ok());
  args.power_of_two = 48;  // not a power of two
  EXPECT_EQ(ApplyHadamardRows(args, nullptr).code(), absl::StatusCode::kInvalidArgument);
  args.power_of_two = 32;
  args.block_size = 2;  // a block without its matrix
  EXPECT_EQ(ApplyHadamardRows(args, nullptr).code(), absl::StatusCode::kInvalidArgument);
  args.power_of_two = 32768;  // wider than shared memory holds
  args.block_size = 1;
  EXPECT_EQ(ApplyHadamardRows(args, nullptr).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
}

}  // namespace
}  // namespace flatfleet::cuda
