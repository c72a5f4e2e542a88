// The CUDA fused residual add + RMSNorm against the CPU reference: cpu::AddInPlace on the widened
// delta, then cpu::RmsNormRows (kernels/cpu/pointwise.h).
//
// Tolerances:
// * residual after the add: exact (one float32 addition of the same two floats, IEEE rounding).
// * float32 output: both sides sum the squares in float32 in different orders (16 lanes and a
//   tree on the CPU, per-thread sums and a block tree here), a few float ulps apart; the
//   normalised values then differ by a few ulps too: relative 2e-5 of max(|y|, 1e-3).
// * bfloat16 output: the GPU's float result lies within a few float ulps of the CPU's float result
//   and is then rounded once to bfloat16 (half a bfloat16 ulp), so it is within 1 bfloat16 ulp
//   (2^-8 relative) of the CPU float value; it may be the other neighbour than the CPU's own
//   rounding when the value sits next to a rounding boundary, hence not bit-exact.
#include "kernels/cuda/fused_add_rmsnorm.h"

#include <cmath>
#include <cstdint>
#include <tuple>
#include <vector>

#include "kernels/cpu/pointwise.h"
#include "tests/gpu/gpu_test_util.h"
#include "tests/gpu/int8_quant_test_util.h"
#include "tests/gpu/ops_test_util.h"

namespace flatfleet::cuda {
namespace {

using testing::BitwiseEqual;
using testing::DeviceBuffer;

constexpr float kEps = 1e-5f;

// Compares a GPU output (bfloat16 bits or float32) with the CPU's float32 result.
void ExpectNearCpu(const std::vector<float>& expected, const std::vector<uint16_t>& actual_bf16) {
  ASSERT_EQ(expected.size(), actual_bf16.size());
  for (size_t i = 0; i < expected.size(); ++i) {
    const double got = testing::Bf16ToFloat(actual_bf16[i]);
    ASSERT_LE(std::fabs(got - expected[i]), testing::Bf16Ulp(expected[i]))
        << "element " << i << ": expected " << expected[i] << ", got " << got;
  }
}
void ExpectNearCpu(const std::vector<float>& expected, const std::vector<float>& actual) {
  ASSERT_EQ(expected.size(), actual.size());
  for (size_t i = 0; i < expected.size(); ++i) {
    ASSERT_LE(std::fabs(static_cast<double>(actual[i]) - expected[i]),
              2e-5 * std::max(1e-3, std::fabs(static_cast<double>(expected[i]))))
        << "element " << i << ": expected " << expected[i] << ", got " << actual[i];
  }
}

struct Inputs {
  std::vector<float> residual;
  std::vector<uint16_t> delta;
  std::vector<float> weight;
};

Inputs RandomInputs(testing::SeededRng& random, int64_t rows, int64_t hidden) {
  Inputs in;
  in.residual = random.Gaussian(rows * hidden, 2.0f);
  in.delta = testing::ToBf16(random.Gaussian(rows * hidden, 0.5f));
  in.weight.resize(hidden);
  for (float& w : in.weight) w = random.UniformFloat(0.5f, 1.5f);
  return in;
}

// CPU reference: residual (+ delta), then the norm of rows `source[i]`.
void Reference(const Inputs& in, int64_t rows, int64_t hidden, bool with_delta,
               const std::vector<int64_t>& source, std::vector<float>& residual,
               std::vector<float>& out) {
  residual = in.residual;
  if (with_delta) {
    const std::vector<float> delta = testing::Widen(in.delta);
    kernels::cpu::AddInPlace(residual.data(), delta.data(), rows * hidden);
  }
  std::vector<float> gathered(source.size() * hidden);
  kernels::cpu::GatherRows(residual.data(), hidden, source, gathered.data());
  out.resize(gathered.size());
  kernels::cpu::RmsNormRows(gathered.data(), static_cast<int64_t>(source.size()), hidden,
                            in.weight.data(), kEps, out.data());
}

class FusedAddRmsNormGpuTest
    : public ::testing::TestWithParam<std::tuple<std::pair<int64_t, int64_t>, bool, bool>> {
 protected:
  testing::SeededRng random_;
};

TEST_P(FusedAddRmsNormGpuTest, MatchesCpuReference) {
  FF_SKIP_WITHOUT_GPU();
  const auto [shape, with_delta, bf16_out] = GetParam();
  const auto [rows, hidden] = shape;
  const Inputs in = RandomInputs(random_, rows, hidden);
  std::vector<int64_t> all_rows(rows);
  for (int64_t r = 0; r < rows; ++r) all_rows[r] = r;
  std::vector<float> expected_residual, expected_out;
  Reference(in, rows, hidden, with_delta, all_rows, expected_residual, expected_out);

  DeviceBuffer<float> d_residual(in.residual), d_weight(in.weight);
  DeviceBuffer<uint16_t> d_delta(in.delta);
  DeviceBuffer<uint16_t> d_out(testing::Poisoned<uint16_t>(rows * hidden));
  DeviceBuffer<float> d_out_f32(testing::Poisoned<float>(rows * hidden));
  DeviceFusedAddRmsNorm args{
      .residual = d_residual.get(),
      .rows = rows,
      .hidden = hidden,
      .delta = with_delta ? reinterpret_cast<const __nv_bfloat16*>(d_delta.get()) : nullptr,
      .weight = d_weight.get(),
      .eps = kEps};
  if (bf16_out) {
    args.out = reinterpret_cast<__nv_bfloat16*>(d_out.get());
  } else {
    args.out_f32 = d_out_f32.get();
  }
  const absl::Status status = FusedAddRmsNorm(args, nullptr);
  ASSERT_TRUE(status.ok()) << status;
  FF_CUDA_ASSERT(cudaDeviceSynchronize());
  EXPECT_TRUE(BitwiseEqual(expected_residual, d_residual.ToHost()));
  if (bf16_out) {
    ExpectNearCpu(expected_out, d_out.ToHost());
  } else {
    ExpectNearCpu(expected_out, d_out_f32.ToHost());
  }
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, FusedAddRmsNormGpuTest,
    ::testing::Combine(::testing::Values(std::pair<int64_t, int64_t>{1, 64},  // tiny fixtures
                                         std::pair<int64_t, int64_t>{3, 256},
                                         std::pair<int64_t, int64_t>{1, 4096},  // 8B decode
                                         std::pair<int64_t, int64_t>{37, 4096},
                                         std::pair<int64_t, int64_t>{5, 8192},  // 70B
                                         std::pair<int64_t, int64_t>{4, 100},   // vector, 25 x 4
                                         std::pair<int64_t, int64_t>{3, 1001},  // scalar
                                         std::pair<int64_t, int64_t>{2, 4095}),
                       ::testing::Bool(), ::testing::Bool()));

// The final norm: all rows get the add, only the gathered rows are normalised (with repeats and
// one index out of range, which gives a NaN row).
TEST(FusedAddRmsNormGpuTest, RowIndexGathersAfterAddingEveryRow) {
  FF_SKIP_WITHOUT_GPU();
  testing::SeededRng random;
  for (const int64_t hidden : {int64_t{256}, int64_t{1001}}) {
    SCOPED_TRACE(hidden);
    const int64_t rows = 9;
    const std::vector<int32_t> index = {8, 0, 3, 3, 9};
    const int64_t out_rows = static_cast<int64_t>(index.size());
    const Inputs in = RandomInputs(random, rows, hidden);
    std::vector<float> expected_residual, expected_out;
    Reference(in, rows, hidden, /*with_delta=*/true, {8, 0, 3, 3}, expected_residual, expected_out);
    DeviceBuffer<float> d_residual(in.residual), d_weight(in.weight);
    DeviceBuffer<uint16_t> d_delta(in.delta);
    DeviceBuffer<int32_t> d_index(index);
    DeviceBuffer<uint16_t> d_out(testing::Poisoned<uint16_t>(out_rows * hidden));
    const DeviceFusedAddRmsNorm args{.residual = d_residual.get(),
                                     .rows = rows,
                                     .hidden = hidden,
                                     .delta = reinterpret_cast<const __nv_bfloat16*>(d_delta.get()),
                                     .weight = d_weight.get(),
                                     .eps = kEps,
                                     .row_index = d_index.get(),
                                     .out_rows = out_rows,
                                     .out = reinterpret_cast<__nv_bfloat16*>(d_out.get())};
    ASSERT_TRUE(FusedAddRmsNorm(args, nullptr).ok());
    FF_CUDA_ASSERT(cudaDeviceSynchronize());
    EXPECT_TRUE(BitwiseEqual(expected_residual, d_residual.ToHost()));
    std::vector<uint16_t> out = d_out.ToHost();
    for (int64_t i = 0; i < hidden; ++i) {
      ASSERT_TRUE(std::isnan(testing::Bf16ToFloat(out[4 * hidden + i]))) << "column " << i;
    }
    out.resize(4 * hidden);
    ExpectNearCpu(expected_out, out);
  }
}

TEST(FusedAddRmsNormGpuTest, RowIndexWithoutDeltaLeavesResidualAlone) {
  FF_SKIP_WITHOUT_GPU();
  testing::SeededRng random;
  const int64_t rows = 6, hidden = 8192;
  const std::vector<int32_t> index = {5, 2};
  const Inputs in = RandomInputs(random, rows, hidden);
  std::vector<float> expected_residual, expected_out;
  Reference(in, rows, hidden, /*with_delta=*/false, {5, 2}, expected_residual, expected_out);
  DeviceBuffer<float> d_residual(in.residual), d_weight(in.weight);
  DeviceBuffer<int32_t> d_index(index);
  DeviceBuffer<float> d_out(testing::Poisoned<float>(2 * hidden));
  const DeviceFusedAddRmsNorm args{.residual = d_residual.get(),
                                   .rows = rows,
                                   .hidden = hidden,
                                   .weight = d_weight.get(),
                                   .eps = kEps,
                                   .row_index = d_index.get(),
                                   .out_rows = 2,
                                   .out_f32 = d_out.get()};
  ASSERT_TRUE(FusedAddRmsNorm(args, nullptr).ok());
  FF_CUDA_ASSERT(cudaDeviceSynchronize());
  EXPECT_TRUE(BitwiseEqual(in.residual, d_residual.ToHost()));
  ExpectNearCpu(expected_out, d_out.ToHost());
}

// Buffers that start 4 bytes in: the scalar kernel, same numerics.
TEST(FusedAddRmsNormGpuTest, UnalignedPointersMatchCpuReference) {
  FF_SKIP_WITHOUT_GPU();
  testing::SeededRng random;
  const int64_t rows = 3, hidden = 512;
  Inputs in = RandomInputs(random, rows, hidden);
  std::vector<int64_t> all_rows = {0, 1, 2};
  std::vector<float> expected_residual, expected_out;
  Reference(in, rows, hidden, true, all_rows, expected_residual, expected_out);
  std::vector<float> residual(1, 0.0f);
  residual.insert(residual.end(), in.residual.begin(), in.residual.end());
  std::vector<float> weight(1, 0.0f);
  weight.insert(weight.end(), in.weight.begin(), in.weight.end());
  std::vector<uint16_t> delta(1, 0);
  delta.insert(delta.end(), in.delta.begin(), in.delta.end());
  DeviceBuffer<float> d_residual(residual), d_weight(weight);
  DeviceBuffer<uint16_t> d_delta(delta);
  DeviceBuffer<uint16_t> d_out(testing::Poisoned<uint16_t>(rows * hidden + 1));
  const DeviceFusedAddRmsNorm args{
      .residual = d_residual.get() + 1,
      .rows = rows,
      .hidden = hidden,
      .delta = reinterpret_cast<const __nv_bfloat16*>(d_delta.get() + 1),
      .weight = d_weight.get() + 1,
      .eps = kEps,
      .out = reinterpret_cast<__nv_bfloat16*>(d_out.get() + 1)};
  ASSERT_TRUE(FusedAddRmsNorm(args, nullptr).ok());
  FF_CUDA_ASSERT(cudaDeviceSynchronize());
  std::vector<float> got_residual = d_residual.ToHost();
  got_residual.erase(got_residual.begin());
  EXPECT_TRUE(BitwiseEqual(expected_residual, got_residual));
  std::vector<uint16_t> out = d_out.ToHost();
  out.erase(out.begin());
  ExpectNearCpu(expected_out, out);
}

TEST(FusedAddRmsNormGpuTest, RejectsBadArguments) {
  // Argument checks run before any device call: no GPU needed.
  float residual = 1.0f, weight = 1.0f, out_f32 = 0.0f;
  __nv_bfloat16 out{};
  const DeviceFusedAddRmsNorm good{
      .residual = &residual, .rows = 1, .hidden = 1, .weight = &weight, .out = &out};
  auto bad = good;
  bad.out_f32 = &out_f32;  // both outputs
  EXPECT_EQ(FusedAddRmsNorm(bad, nullptr).code(), absl::StatusCode::kInvalidArgument);
  bad = good;
  bad.out = nullptr;  // neither
  EXPECT_EQ(FusedAddRmsNorm(bad, nullptr).code(), absl::StatusCode::kInvalidArgument);
  bad = good;
  bad.out_rows = 2;  // without row_index
  EXPECT_EQ(FusedAddRmsNorm(bad, nullptr).code(), absl::StatusCode::kInvalidArgument);
  bad = good;
  bad.weight = nullptr;
  EXPECT_EQ(FusedAddRmsNorm(bad, nullptr).code(), absl::StatusCode::kInvalidArgument);
  bad = good;
  bad.hidden = 0;
  EXPECT_EQ(FusedAddRmsNorm(bad, nullptr).code(), absl::StatusCode::kInvalidArgument);
  bad = good;
  bad.eps = -1.0f;
  EXPECT_EQ(FusedAddRmsNorm(bad, nullptr).code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace flatfleet::cuda
