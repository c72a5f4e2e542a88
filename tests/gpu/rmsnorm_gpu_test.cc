// The CUDA RMSNorm kernel against the CPU reference (kernels/cpu/pointwise.h).
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "kernels/cpu/pointwise.h"
#include "kernels/cuda/rmsnorm.h"
#include "tests/gpu/gpu_test_util.h"

namespace flatfleet::cuda {
namespace {

using testing::DeviceBuffer;

std::vector<float> RandomVector(size_t n, std::mt19937& rng, float lo, float hi) {
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

class RmsNormGpuTest : public ::testing::TestWithParam<std::pair<int64_t, int64_t>> {};

TEST_P(RmsNormGpuTest, MatchesCpuReference) {
  FF_SKIP_WITHOUT_GPU();
  const auto [rows, dim] = GetParam();
  std::mt19937 rng(static_cast<uint32_t>(rows * 131 + dim));
  const auto x = RandomVector(rows * dim, rng, -3.0f, 3.0f);
  const auto gamma = RandomVector(dim, rng, 0.5f, 1.5f);
  const float eps = 1e-5f;

  std::vector<float> expected(rows * dim);
  kernels::cpu::RmsNormRows(x.data(), rows, dim, gamma.data(), eps, expected.data());

  DeviceBuffer<float> d_x(x), d_gamma(gamma), d_y(rows * dim);
  ASSERT_NE(d_x.get(), nullptr);
  FF_CUDA_ASSERT(LaunchRmsNorm(d_x.get(), d_gamma.get(), rows, dim, eps, d_y.get(), nullptr));
  FF_CUDA_ASSERT(cudaDeviceSynchronize());
  const auto actual = d_y.ToHost();

  // Both accumulate in float32 in different orders: allow a few ulps of the row's scale.
  double max_rel = 0;
  for (int64_t i = 0; i < rows * dim; ++i) {
    const double denom = std::max(1e-3, std::fabs(static_cast<double>(expected[i])));
    max_rel = std::max(max_rel, std::fabs(actual[i] - expected[i]) / denom);
  }
  EXPECT_LT(max_rel, 2e-5) << "rows=" << rows << " dim=" << dim;
}

INSTANTIATE_TEST_SUITE_P(Shapes, RmsNormGpuTest,
                         ::testing::Values(std::pair<int64_t, int64_t>{1, 256},
                                           std::pair<int64_t, int64_t>{7, 4096},
                                           std::pair<int64_t, int64_t>{33, 8192},
                                           std::pair<int64_t, int64_t>{5, 100},
                                           // Not a multiple of 4: the scalar kernel.
                                           std::pair<int64_t, int64_t>{3, 1001}));

TEST(RmsNormGpuTest, InPlaceMatchesOutOfPlace) {
  FF_SKIP_WITHOUT_GPU();
  const int64_t rows = 4, dim = 1024;
  std::mt19937 rng(3);
  const auto x = RandomVector(rows * dim, rng, -2.0f, 2.0f);
  const auto gamma = RandomVector(dim, rng, 0.5f, 1.5f);
  DeviceBuffer<float> d_x(x), d_gamma(gamma), d_y(rows * dim);
  FF_CUDA_ASSERT(LaunchRmsNorm(d_x.get(), d_gamma.get(), rows, dim, 1e-6f, d_y.get(), nullptr));
  FF_CUDA_ASSERT(LaunchRmsNorm(d_x.get(), d_gamma.get(), rows, dim, 1e-6f, d_x.get(), nullptr));
  FF_CUDA_ASSERT(cudaDeviceSynchronize());
  EXPECT_EQ(d_x.ToHost(), d_y.ToHost());
}

TEST(RmsNormGpuTest, UnalignedPointersMatchCpuReference) {
  FF_SKIP_WITHOUT_GPU();
  const int64_t rows = 6, dim = 512;  // multiple of 4, but the buffers start 4 bytes in
  std::mt19937 rng(11);
  const auto x = RandomVector(rows * dim + 1, rng, -2.0f, 2.0f);
  const auto gamma = RandomVector(dim + 1, rng, 0.5f, 1.5f);
  std::vector<float> expected(rows * dim);
  kernels::cpu::RmsNormRows(x.data() + 1, rows, dim, gamma.data() + 1, 1e-5f, expected.data());
  DeviceBuffer<float> d_x(x), d_gamma(gamma), d_y(rows * dim + 1);
  FF_CUDA_ASSERT(
      LaunchRmsNorm(d_x.get() + 1, d_gamma.get() + 1, rows, dim, 1e-5f, d_y.get() + 1, nullptr));
  FF_CUDA_ASSERT(cudaDeviceSynchronize());
  const auto actual = d_y.ToHost();
  for (int64_t i = 0; i < rows * dim; ++i) {
    ASSERT_NEAR(actual[i + 1], expected[i], 2e-5 * std::max(1e-3f, std::fabs(expected[i])))
        << "element " << i;
  }
}

}  // namespace
}  // namespace flatfleet::cuda
