// The CUDA elementwise ops against the CPU reference (kernels/cpu/pointwise.h) on widened
// bfloat16 inputs, through the public wrappers (vector kernel where the shape allows) and the raw
// launcher with the scalar kernel forced.
//
// Tolerances:
// * SiluMul: the GPU's float silu(g) * u uses CUDA's expf (max error 2 float ulps) where the CPU
//   uses glibc's exp, then one bfloat16 rounding: within 1 bfloat16 ulp (2^-8 relative) of the
//   CPU's float value (half an ulp for the rounding plus a few float ulps).
// * Casts and the add: exact (widening is exact, narrowing is one round-to-nearest-even, the add
//   one float32 addition).
#include "kernels/cuda/activation_ops.h"

#include <cmath>
#include <cstdint>
#include <iterator>
#include <limits>
#include <tuple>
#include <vector>

#include "kernels/cpu/pointwise.h"
#include "kernels/cuda/activation_ops_launch.h"
#include "tests/gpu/gpu_test_util.h"
#include "tests/gpu/int8_quant_test_util.h"
#include "tests/gpu/ops_test_util.h"

namespace flatfleet::cuda {
namespace {

using testing::BitwiseEqual;
using testing::DeviceBuffer;

// Shape of one case: rows, columns (inter for SiluMul), extra elements at the end of each input
// and output row (the stride padding, which must stay untouched).
struct Shape {
  int64_t rows;
  int64_t cols;
  int64_t in_pad;
  int64_t out_pad;
};

const auto kShapes = ::testing::Values(Shape{1, 14336, 0, 0},  // Llama-3-8B / Mixtral decode
                                       Shape{3, 28672, 0, 0},  // Llama-3-70B
                                       Shape{5, 64, 0, 0},     // tiny fixtures
                                       Shape{4, 256, 8, 16},   // strided, still vectorised
                                       Shape{3, 100, 0, 0},    // not a multiple of 8: scalar
                                       Shape{2, 64, 3, 5});    // odd strides: scalar

class ActivationOpsGpuTest : public ::testing::TestWithParam<std::tuple<Shape, bool>> {
 protected:
  testing::SeededRng random_;
};

TEST_P(ActivationOpsGpuTest, SiluMulMatchesCpu) {
  FF_SKIP_WITHOUT_GPU();
  const auto [shape, force_scalar] = GetParam();
  const auto [rows, inter, in_pad, out_pad] = shape;
  const int64_t in_stride = 2 * inter + in_pad, out_stride = inter + out_pad;
  const std::vector<uint16_t> gate_up = testing::ToBf16(random_.Gaussian(rows * in_stride, 3.0f));
  std::vector<float> expected(rows * inter);
  for (int64_t r = 0; r < rows; ++r) {
    std::vector<float> gate(inter), up(inter);
    for (int64_t i = 0; i < inter; ++i) {
      gate[i] = testing::Bf16ToFloat(gate_up[r * in_stride + i]);
      up[i] = testing::Bf16ToFloat(gate_up[r * in_stride + inter + i]);
    }
    kernels::cpu::SiluMul(gate.data(), up.data(), inter, expected.data() + r * inter);
  }
  DeviceBuffer<uint16_t> d_in(gate_up);
  DeviceBuffer<uint16_t> d_out(testing::Poisoned<uint16_t>(rows * out_stride));
  if (force_scalar) {
    internal::ElementwiseParams params{.op = internal::ElementwiseOp::kSiluMul,
                                       .in = d_in.get(),
                                       .in_row_stride = in_stride,
                                       .out = d_out.get(),
                                       .out_row_stride = out_stride,
                                       .rows = rows,
                                       .cols = inter,
                                       .force_scalar = true};
    FF_CUDA_ASSERT(internal::LaunchElementwise(params, nullptr));
  } else {
    const DeviceSiluMul args{.gate_up = reinterpret_cast<const __nv_bfloat16*>(d_in.get()),
                             .gate_up_row_stride = in_stride,
                             .rows = rows,
                             .inter = inter,
                             .out = reinterpret_cast<__nv_bfloat16*>(d_out.get()),
                             .out_row_stride = out_stride};
    const absl::Status status = SiluMul(args, nullptr);
    ASSERT_TRUE(status.ok()) << status;
  }
  FF_CUDA_ASSERT(cudaDeviceSynchronize());
  const std::vector<uint16_t> out = d_out.ToHost();
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t i = 0; i < inter; ++i) {
      const double want = expected[r * inter + i];
      const double got = testing::Bf16ToFloat(out[r * out_stride + i]);
      ASSERT_LE(std::fabs(got - want), testing::Bf16Ulp(want))
          << "row " << r << " column " << i << ": expected " << want << ", got " << got;
    }
    for (int64_t i = inter; i < out_stride; ++i) {
      ASSERT_EQ(out[r * out_stride + i], 0xffff) << "padding overwritten, row " << r;
    }
  }
}

// Runs one cast/add op on the GPU, either through `wrapper` or the scalar raw launcher.
template <typename In, typename Out, typename Wrapper>
std::vector<Out> RunElementwise(internal::ElementwiseOp op, const std::vector<In>& in,
                                std::vector<Out> out, const Shape& shape, bool force_scalar,
                                Wrapper wrapper) {
  DeviceBuffer<In> d_in(in);
  DeviceBuffer<Out> d_out(out);
  const int64_t in_stride = shape.cols + shape.in_pad, out_stride = shape.cols + shape.out_pad;
  if (force_scalar) {
    internal::ElementwiseParams params{.op = op,
                                       .in = d_in.get(),
                                       .in_row_stride = in_stride,
                                       .out = d_out.get(),
                                       .out_row_stride = out_stride,
                                       .rows = shape.rows,
                                       .cols = shape.cols,
                                       .force_scalar = true};
    EXPECT_EQ(internal::LaunchElementwise(params, nullptr), cudaSuccess);
  } else {
    const absl::Status status = wrapper(d_in.get(), in_stride, d_out.get(), out_stride);
    EXPECT_TRUE(status.ok()) << status;
  }
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  return d_out.ToHost();
}

TEST_P(ActivationOpsGpuTest, CastBf16ToF32IsExact) {
  FF_SKIP_WITHOUT_GPU();
  const auto [shape, force_scalar] = GetParam();
  const int64_t in_stride = shape.cols + shape.in_pad, out_stride = shape.cols + shape.out_pad;
  const std::vector<uint16_t> in = testing::ToBf16(random_.Gaussian(shape.rows * in_stride, 10.0f));
  std::vector<float> expected = testing::Poisoned<float>(shape.rows * out_stride);
  for (int64_t r = 0; r < shape.rows; ++r) {
    for (int64_t i = 0; i < shape.cols; ++i) {
      expected[r * out_stride + i] = testing::Bf16ToFloat(in[r * in_stride + i]);
    }
  }
  const auto out = RunElementwise(
      internal::ElementwiseOp::kCastBf16ToF32, in, testing::Poisoned<float>(expected.size()), shape,
      force_scalar, [&](uint16_t* d_in, int64_t is, float* d_out, int64_t os) {
        return CastBf16ToF32({.in = reinterpret_cast<const __nv_bfloat16*>(d_in),
                              .in_row_stride = is,
                              .out = d_out,
                              .out_row_stride = os,
                              .rows = shape.rows,
                              .cols = shape.cols},
                             nullptr);
      });
  EXPECT_TRUE(BitwiseEqual(expected, out));
}

TEST_P(ActivationOpsGpuTest, CastF32ToBf16RoundsToNearestEven) {
  FF_SKIP_WITHOUT_GPU();
  const auto [shape, force_scalar] = GetParam();
  const int64_t in_stride = shape.cols + shape.in_pad, out_stride = shape.cols + shape.out_pad;
  std::vector<float> in = random_.Gaussian(shape.rows * in_stride, 10.0f);
  // Ties (exactly half way between two bfloat16), overflow to infinity, infinities, tiny values.
  const float specials[] = {
      testing::BitsToFloat(0x3f808000u),        testing::BitsToFloat(0x3f818000u),
      std::numeric_limits<float>::max(),        -std::numeric_limits<float>::infinity(),
      std::numeric_limits<float>::denorm_min(), -0.0f};
  for (size_t j = 0; j < std::size(specials) && j < in.size(); ++j) in[j] = specials[j];
  std::vector<uint16_t> expected = testing::Poisoned<uint16_t>(shape.rows * out_stride);
  for (int64_t r = 0; r < shape.rows; ++r) {
    for (int64_t i = 0; i < shape.cols; ++i) {
      expected[r * out_stride + i] = testing::FloatToBf16(in[r * in_stride + i]);
    }
  }
  const auto out = RunElementwise(
      internal::ElementwiseOp::kCastF32ToBf16, in, testing::Poisoned<uint16_t>(expected.size()),
      shape, force_scalar, [&](float* d_in, int64_t is, uint16_t* d_out, int64_t os) {
        return CastF32ToBf16({.in = d_in,
                              .in_row_stride = is,
                              .out = reinterpret_cast<__nv_bfloat16*>(d_out),
                              .out_row_stride = os,
                              .rows = shape.rows,
                              .cols = shape.cols},
                             nullptr);
      });
  EXPECT_TRUE(BitwiseEqual(expected, out));
}

TEST_P(ActivationOpsGpuTest, AddBf16ToF32MatchesAddInPlace) {
  FF_SKIP_WITHOUT_GPU();
  const auto [shape, force_scalar] = GetParam();
  const int64_t in_stride = shape.cols + shape.in_pad, out_stride = shape.cols + shape.out_pad;
  const std::vector<uint16_t> delta = testing::ToBf16(random_.Gaussian(shape.rows * in_stride));
  const std::vector<float> residual = random_.Gaussian(shape.rows * out_stride, 4.0f);
  std::vector<float> expected = residual;
  for (int64_t r = 0; r < shape.rows; ++r) {
    std::vector<float> d(shape.cols);
    for (int64_t i = 0; i < shape.cols; ++i) d[i] = testing::Bf16ToFloat(delta[r * in_stride + i]);
    kernels::cpu::AddInPlace(expected.data() + r * out_stride, d.data(), shape.cols);
  }
  const auto out =
      RunElementwise(internal::ElementwiseOp::kAddBf16ToF32, delta, residual, shape, force_scalar,
                     [&](uint16_t* d_in, int64_t is, float* d_out, int64_t os) {
                       return AddBf16ToF32({.residual = d_out,
                                            .residual_row_stride = os,
                                            .delta = reinterpret_cast<const __nv_bfloat16*>(d_in),
                                            .delta_row_stride = is,
                                            .rows = shape.rows,
                                            .cols = shape.cols},
                                           nullptr);
                     });
  EXPECT_TRUE(BitwiseEqual(expected, out));
}

INSTANTIATE_TEST_SUITE_P(Shapes, ActivationOpsGpuTest,
                         ::testing::Combine(kShapes, ::testing::Bool()));

TEST(ActivationOpsGpuTest, CastF32ToBf16KeepsNaN) {
  FF_SKIP_WITHOUT_GPU();
  const std::vector<float> in = {std::nanf(""), -std::nanf(""), 1.0f, 2.0f, 3.0f, 4.0f, 5.0f, 6.0f};
  DeviceBuffer<float> d_in(in);
  DeviceBuffer<uint16_t> d_out(testing::Poisoned<uint16_t>(in.size()));
  ASSERT_TRUE(CastF32ToBf16({.in = d_in.get(),
                             .out = reinterpret_cast<__nv_bfloat16*>(d_out.get()),
                             .rows = 1,
                             .cols = static_cast<int64_t>(in.size())},
                            nullptr)
                  .ok());
  FF_CUDA_ASSERT(cudaDeviceSynchronize());
  const auto out = d_out.ToHost();
  EXPECT_TRUE(std::isnan(testing::Bf16ToFloat(out[0])));
  EXPECT_TRUE(std::isnan(testing::Bf16ToFloat(out[1])));
  for (size_t i = 2; i < in.size(); ++i) EXPECT_EQ(testing::Bf16ToFloat(out[i]), in[i]);
}

TEST(ActivationOpsGpuTest, RejectsBadArguments) {
  // Argument checks run before any device call: no GPU needed.
  __nv_bfloat16 buffer[4] = {};
  DeviceSiluMul silu{.gate_up = buffer, .rows = 1, .inter = 2, .out = buffer};
  auto bad = silu;
  bad.gate_up_row_stride = 3;  // shorter than 2 * inter
  EXPECT_EQ(SiluMul(bad, nullptr).code(), absl::StatusCode::kInvalidArgument);
  bad = silu;
  bad.out = nullptr;
  EXPECT_EQ(SiluMul(bad, nullptr).code(), absl::StatusCode::kInvalidArgument);
  bad = silu;
  bad.inter = 0;
  EXPECT_EQ(SiluMul(bad, nullptr).code(), absl::StatusCode::kInvalidArgument);
  float f = 0.0f;
  EXPECT_EQ(
      CastBf16ToF32({.in = buffer, .out = &f, .out_row_stride = 1, .rows = 1, .cols = 2}, nullptr)
          .code(),
      absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(AddBf16ToF32({.rows = 0, .cols = 8}, nullptr).ok()) << "rows = 0 is a no-op";
}

}  // namespace
}  // namespace flatfleet::cuda
