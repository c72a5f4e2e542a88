// UnpermuteMoeOutput (kernels/cuda/moe_unpermute.h) against a host loop written in the order of
// cpu::ComposeSparseMoe (experts by ascending index, out += y * weight fused, from 0). Both do
// the same float32 operations in the same order, so the results are compared bit for bit
// (float32 out) and after the one rounding to bf16 (bf16 out), with no tolerance.
#include "kernels/cuda/moe_unpermute.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "tests/gpu/bf16_test_util.h"
#include "tests/gpu/gpu_test_util.h"
#include "tests/gpu/int8_quant_test_util.h"
#include "tests/quant/test_random.h"

namespace flatfleet::cuda {
namespace {

using testing::BitwiseEqual;
using testing::DeviceBuffer;
using testing::Poison;
using testing::RoundAllToBf16;
using testing::ToBf16Bits;

struct UnpermuteCase {
  int64_t rows, top_k, num_experts, hidden;
};

using UnpermuteParam = std::tuple<UnpermuteCase, GemmElementType, GemmElementType>;

class MoeUnpermuteGpuTest : public quant::test_util::RandomTest,
                            public ::testing::WithParamInterface<UnpermuteParam> {};

TEST_P(MoeUnpermuteGpuTest, SumsExpertsInHostOrder) {
  FF_SKIP_WITHOUT_GPU();
  const auto& [c, yp_type, out_type] = GetParam();
  const int64_t total = c.rows * c.top_k;
  // Routing: distinct experts per row in random rank order, random positive weights; one slot
  // dropped (inverse -1), as the permutation does for an out-of-range id.
  std::vector<int32_t> ids(total), inverse(total);
  std::vector<float> weights(total);
  std::vector<int32_t> experts(c.num_experts);
  for (int64_t r = 0; r < c.rows; ++r) {
    std::iota(experts.begin(), experts.end(), 0);
    std::shuffle(experts.begin(), experts.end(), rng_);
    for (int64_t j = 0; j < c.top_k; ++j) {
      ids[r * c.top_k + j] = experts[j];
      weights[r * c.top_k + j] = UniformFloat(0.01f, 1.0f);
    }
  }
  std::iota(inverse.begin(), inverse.end(), 0);
  std::shuffle(inverse.begin(), inverse.end(), rng_);  // any permutation of the Yp rows
  inverse[total / 2] = -1;
  std::vector<float> yp = Gaussian(total * c.hidden);
  if (yp_type == GemmElementType::kBf16) RoundAllToBf16(yp);

  // Host: out = 0; for experts e ascending: out = fma(y_e, w_e, out).
  std::vector<float> expected(c.rows * c.hidden, 0.0f);
  for (int64_t r = 0; r < c.rows; ++r) {
    std::vector<int64_t> slots(c.top_k);
    std::iota(slots.begin(), slots.end(), 0);
    std::sort(slots.begin(), slots.end(),
              [&](int64_t a, int64_t b) { return ids[r * c.top_k + a] < ids[r * c.top_k + b]; });
    for (int64_t j : slots) {
      const int32_t position = inverse[r * c.top_k + j];
      if (position < 0) continue;
      for (int64_t h = 0; h < c.hidden; ++h) {
        float& out = expected[r * c.hidden + h];
        out = std::fma(yp[position * c.hidden + h], weights[r * c.top_k + j], out);
      }
    }
  }

  DeviceBuffer<float> d_yp_f32(yp);
  DeviceBuffer<uint16_t> d_yp_bf16(ToBf16Bits(yp));
  DeviceBuffer<int32_t> d_ids(ids), d_inverse(inverse);
  DeviceBuffer<float> d_weights(weights);
  DeviceBuffer<float> d_out_f32(c.rows * c.hidden);
  DeviceBuffer<uint16_t> d_out_bf16(c.rows * c.hidden);
  Poison(d_out_f32, c.rows * c.hidden);
  Poison(d_out_bf16, c.rows * c.hidden);
  const bool f32_in = yp_type == GemmElementType::kFloat32;
  const bool f32_out = out_type == GemmElementType::kFloat32;
  const absl::Status status =
      UnpermuteMoeOutput({.yp = f32_in ? static_cast<const void*>(d_yp_f32.get()) : d_yp_bf16.get(),
                          .yp_type = yp_type,
                          .rows = c.rows,
                          .top_k = c.top_k,
                          .hidden = c.hidden,
                          .expert_ids = d_ids.get(),
                          .expert_weights = d_weights.get(),
                          .inverse_permutation = d_inverse.get(),
                          .out = f32_out ? static_cast<void*>(d_out_f32.get()) : d_out_bf16.get(),
                          .out_type = out_type},
                         nullptr);
  ASSERT_TRUE(status.ok()) << status;
  FF_CUDA_ASSERT(cudaDeviceSynchronize());
  if (f32_out) {
    EXPECT_TRUE(BitwiseEqual(expected, d_out_f32.ToHost()));
  } else {
    EXPECT_TRUE(BitwiseEqual(ToBf16Bits(expected), d_out_bf16.ToHost()));
  }
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, MoeUnpermuteGpuTest,
    ::testing::Combine(
        // Mixtral (hidden 4096, top-2 of 8), the tiny fixture (256), a hidden size that is not a
        // multiple of 4 (element accesses), top-8 of 64.
        ::testing::Values(UnpermuteCase{1, 2, 8, 4096}, UnpermuteCase{67, 2, 8, 4096},
                          UnpermuteCase{33, 2, 8, 256}, UnpermuteCase{9, 2, 8, 13},
                          UnpermuteCase{20, 8, 64, 64}, UnpermuteCase{5, 1, 4, 100}),
        ::testing::Values(GemmElementType::kBf16, GemmElementType::kFloat32),
        ::testing::Values(GemmElementType::kBf16, GemmElementType::kFloat32)),
    [](const auto& info) {
      const UnpermuteCase& c = std::get<0>(info.param);
      return absl::StrCat(
          "rows", c.rows, "_k", c.top_k, "_e", c.num_experts, "_h", c.hidden,
          std::get<1>(info.param) == GemmElementType::kBf16 ? "_bf16in" : "_f32in",
          std::get<2>(info.param) == GemmElementType::kBf16 ? "_bf16out" : "_f32out");
    });

TEST(MoeUnpermuteArgumentsTest, RejectsBadArgumentsNamingTheField) {
  // Argument checks only (nothing reaches the device): runs without a GPU.
  alignas(16) static float buffer[64];
  const MoeUnpermuteArgs good{.yp = buffer,
                              .rows = 2,
                              .top_k = 2,
                              .hidden = 8,
                              .expert_ids = reinterpret_cast<const int32_t*>(buffer),
                              .expert_weights = buffer,
                              .inverse_permutation = reinterpret_cast<const int32_t*>(buffer),
                              .out = buffer};
  const auto message = [](const MoeUnpermuteArgs& args) {
    return std::string(UnpermuteMoeOutput(args, nullptr).message());
  };
  MoeUnpermuteArgs args = good;
  args.top_k = 9;
  EXPECT_THAT(message(args), ::testing::HasSubstr("top_k"));
  args = good;
  args.hidden = 0;
  EXPECT_THAT(message(args), ::testing::HasSubstr("bad shape"));
  args = good;
  args.yp = nullptr;
  EXPECT_THAT(message(args), ::testing::HasSubstr("yp is null"));
  args = good;
  args.inverse_permutation = nullptr;
  EXPECT_THAT(message(args), ::testing::HasSubstr("inverse_permutation is null"));
  args = good;
  args.out = nullptr;
  EXPECT_THAT(message(args), ::testing::HasSubstr("out is null"));
  args = good;
  args.rows = 0;
  EXPECT_TRUE(UnpermuteMoeOutput(args, nullptr).ok());
}

}  // namespace
}  // namespace flatfleet::cuda
