// GroupedGemm (kernels/cuda/grouped_gemm.h) against the CPU float32 GEMM (kernels/cpu/gemm.h)
// of each expert's rows, on the same bf16-rounded operands, for both paths (tensor cores and
// the SIMT reference).
//
// Tolerance, as for the dense bf16 GEMM (bf16_gemm_test.cc): bf16 x bf16 products are exact in
// float32, so the sums differ only in order and rounding; allowed 2^-16 of the magnitude bound
// M = |x_row| |w_row| >= sum_k |x w| (random-walk error ~ sqrt(k) 2^-24 M, while one wrong term
// is ~ M / k), plus 2^-8 |y| for the rounding of a bf16 output. Rows past offsets[E] and the
// weights of empty experts are poisoned with NaN: writing the former or reading the latter
// fails the test.
#include "kernels/cuda/grouped_gemm.h"

#include <cmath>
#include <cstdint>
#include <numeric>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gmock/gmock.h"
#include "kernels/cpu/gemm.h"
#include "tests/gpu/bf16_test_util.h"
#include "tests/gpu/gpu_test_util.h"
#include "tests/quant/test_random.h"

namespace flatfleet::cuda {
namespace {

using testing::AllClose;
using testing::AsBf16;
using testing::Bf16BitsToFloats;
using testing::DeviceBuffer;
using testing::Poison;
using testing::RoundAllToBf16;
using testing::ToBf16Bits;

constexpr double kAccumulationTolerance = 1.0 / (1 << 16);  // of M
constexpr double kBf16OutputTolerance = 1.0 / (1 << 8);     // of |y|

struct GroupedCase {
  std::string name;
  std::vector<int32_t> counts;  // rows per expert
  int64_t n, k;
  int64_t max_rows_hint;       // GroupedGemmArgs::max_rows_per_expert
  bool pointer_array;          // weights through a device pointer array (in reversed slots)
  int64_t stride_padding = 0;  // extra elements between stacked experts
};

using GroupedParam = std::tuple<GroupedCase, GroupedGemmPath, GemmElementType>;

class GroupedGemmGpuBase : public quant::test_util::RandomTest {
 protected:
  void RunCase(const GroupedCase& c, GroupedGemmPath path, GemmElementType y_type);

  // Uniform in (-half_width, half_width), never 0, rounded to bf16: a fast LCG seeded by the
  // test seed (Mixtral's experts are 117M weights each).
  std::vector<float> RandomBf16(int64_t count, float half_width) {
    std::vector<float> values(count);
    uint64_t state = rng_() | 1;
    for (float& v : values) {
      state = state * 6364136223846793005ull + 1442695040888963407ull;
      const auto bits = static_cast<int64_t>(state >> 40);
      v = (static_cast<float>(bits - (1 << 23)) + 0.5f) * (half_width / (1 << 23));
    }
    RoundAllToBf16(values);
    return values;
  }
};

// Euclidean norm of each row of a [rows, cols] matrix.
std::vector<double> RowNorms(const float* values, int64_t rows, int64_t cols) {
  std::vector<double> norms(rows);
  for (int64_t r = 0; r < rows; ++r) {
    double sum = 0;
    for (int64_t c = 0; c < cols; ++c) sum += double{values[r * cols + c]} * values[r * cols + c];
    norms[r] = std::sqrt(sum);
  }
  return norms;
}

void GroupedGemmGpuBase::RunCase(const GroupedCase& c, GroupedGemmPath path,
                                 GemmElementType y_type) {
  const int64_t num_experts = static_cast<int64_t>(c.counts.size());
  std::vector<int32_t> offsets(num_experts + 1, 0);
  std::partial_sum(c.counts.begin(), c.counts.end(), offsets.begin() + 1);
  const int64_t used_rows = offsets.back();
  const int64_t total_rows = used_rows + 3;  // the host bound may exceed the rows in use
  const int64_t n = c.n, k = c.k;
  const int64_t stride = n * k + c.stride_padding;
  const bool f32_out = y_type == GemmElementType::kFloat32;

  const std::vector<float> xp = RandomBf16(total_rows * k, 1.0f);
  DeviceBuffer<uint16_t> d_xp(ToBf16Bits(xp));
  DeviceBuffer<int32_t> d_offsets(offsets);
  DeviceBuffer<uint16_t> d_weights(num_experts * stride);
  Poison(d_weights, num_experts * stride);  // empty experts keep NaN weights
  const auto slot = [&](int64_t e) { return c.pointer_array ? num_experts - 1 - e : e; };
  std::vector<const __nv_bfloat16*> pointers(num_experts);
  for (int64_t e = 0; e < num_experts; ++e) pointers[e] = AsBf16(d_weights) + slot(e) * stride;
  DeviceBuffer<const __nv_bfloat16*> d_pointers(pointers);

  std::vector<float> expected(used_rows * n), magnitude(used_rows * n);
  for (int64_t e = 0; e < num_experts; ++e) {
    if (c.counts[e] == 0) continue;
    const std::vector<float> w = RandomBf16(n * k, 0.035f);
    const std::vector<uint16_t> w_bits = ToBf16Bits(w);
    FF_CUDA_ASSERT(cudaMemcpy(AsBf16(d_weights) + slot(e) * stride, w_bits.data(), n * k * 2,
                              cudaMemcpyHostToDevice));
    const float* x = xp.data() + offsets[e] * k;
    kernels::cpu::Gemm(x, c.counts[e], kernels::cpu::PackedMatrix(w.data(), n, k, nullptr),
                       expected.data() + offsets[e] * n);
    const std::vector<double> x_norms = RowNorms(x, c.counts[e], k);
    const std::vector<double> w_norms = RowNorms(w.data(), n, k);
    for (int64_t r = 0; r < c.counts[e]; ++r) {
      for (int64_t col = 0; col < n; ++col) {
        magnitude[(offsets[e] + r) * n + col] = static_cast<float>(x_norms[r] * w_norms[col]);
      }
    }
  }

  DeviceBuffer<float> d_y_f32(total_rows * n);
  DeviceBuffer<uint16_t> d_y_bf16(total_rows * n);
  Poison(d_y_f32, total_rows * n);
  Poison(d_y_bf16, total_rows * n);
  GroupedGemmArgs args{.num_experts = num_experts,
                       .total_rows = total_rows,
                       .max_rows_per_expert = c.max_rows_hint,
                       .n = n,
                       .k = k,
                       .expert_offsets = d_offsets.get(),
                       .xp = AsBf16(d_xp),
                       .y_type = y_type,
                       .path = path};
  if (c.pointer_array) {
    args.weight_pointers = d_pointers.get();
  } else {
    args.weights = AsBf16(d_weights);
    args.weight_expert_stride = stride;
  }
  args.yp = f32_out ? static_cast<void*>(d_y_f32.get()) : d_y_bf16.get();
  const absl::Status status = GroupedGemm(args, nullptr);
  ASSERT_TRUE(status.ok()) << status;
  FF_CUDA_ASSERT(cudaDeviceSynchronize());
  std::vector<float> actual = f32_out ? d_y_f32.ToHost() : Bf16BitsToFloats(d_y_bf16.ToHost());
  for (int64_t i = used_rows * n; i < total_rows * n; ++i) {
    ASSERT_TRUE(std::isnan(actual[i])) << "wrote row " << i / n << " past offsets[E]";
  }
  actual.resize(used_rows * n);
  std::vector<float> allowed(magnitude.size());
  for (size_t i = 0; i < magnitude.size(); ++i) allowed[i] = kAccumulationTolerance * magnitude[i];
  EXPECT_TRUE(AllClose(expected, actual, allowed, f32_out ? 0.0 : kBf16OutputTolerance));
}

class GroupedGemmGpuTest : public GroupedGemmGpuBase,
                           public ::testing::WithParamInterface<GroupedParam> {};

TEST_P(GroupedGemmGpuTest, MatchesPerExpertCpuGemm) {
  FF_SKIP_WITHOUT_GPU();
  const auto& [c, path, y_type] = GetParam();
  RunCase(c, path, y_type);
}

// k = 13 (rows not 16-byte aligned): the automatic choice falls back to the SIMT path.
TEST_F(GroupedGemmGpuBase, AutoPathHandlesUnalignedK) {
  FF_SKIP_WITHOUT_GPU();
  RunCase({"odd_k", {5, 0, 17, 0, 0, 33, 1, 0}, 200, 13, 0, false}, GroupedGemmPath::kAuto,
          GemmElementType::kBf16);
}

// The automatic choice on aligned operands (tensor cores), with the default stride.
TEST_F(GroupedGemmGpuBase, AutoPathMatchesOnAlignedOperands) {
  FF_SKIP_WITHOUT_GPU();
  RunCase({"aligned", {3, 8, 0, 2, 11, 0, 1, 7}, 1024, 256, 0, false}, GroupedGemmPath::kAuto,
          GemmElementType::kBf16);
}

std::string ParamName(const ::testing::TestParamInfo<GroupedParam>& info) {
  const auto& [c, path, y_type] = info.param;
  return absl::StrCat(c.name, path == GroupedGemmPath::kSimt ? "_simt" : "_tc",
                      y_type == GemmElementType::kBf16 ? "_bf16" : "_f32");
}

// The tiny Mixtral fixture: hidden 256, intermediate 512, 8 experts, top-2; gate and up stacked
// (n = 2 * 512) and the down projection (n = 256, k = 512).
std::vector<GroupedCase> TinyCases() {
  const std::vector<int32_t> decode = {0, 1, 0, 0, 1, 0, 0, 0};           // 1 token
  const std::vector<int32_t> batch16 = {5, 3, 0, 9, 4, 2, 8, 1};          // 16 tokens
  const std::vector<int32_t> batch64 = {20, 11, 0, 31, 17, 12, 37, 0};    // 64 tokens
  const std::vector<int32_t> prefill = {150, 47, 0, 99, 1, 200, 3, 100};  // 300 tokens
  const std::vector<int32_t> one_expert = {0, 0, 0, 77, 0, 0, 0, 0};
  const std::vector<int32_t> odd = {5, 0, 17, 0, 0, 33, 1, 0};
  const std::vector<int32_t> empty = {0, 0, 0, 0, 0, 0, 0, 0};
  return {
      {"decode_gate_up", decode, 1024, 256, 1, false},
      {"decode_down", decode, 256, 512, 1, true},
      {"batch16_gate_up", batch16, 1024, 256, 16, false, 8},
      {"batch16_down", batch16, 256, 512, 16, true},
      {"batch64_gate_up", batch64, 1024, 256, 64, true},
      {"batch64_down", batch64, 256, 512, 64, false},
      {"prefill_gate_up", prefill, 1024, 256, 300, false},
      {"prefill_down", prefill, 256, 512, 0, true},
      {"one_expert_all_rows", one_expert, 1024, 256, 77, false},
      {"odd_counts_small_tiles", odd, 256, 512, 0, false},
      // Odd n (guarded single-element stores); k % 16 == 8 (a half zero-filled k16 step).
      {"odd_n_k264", odd, 1003, 264, 33, true},
      {"all_empty", empty, 256, 512, 0, false},
  };
}

INSTANTIATE_TEST_SUITE_P(
    Tiny, GroupedGemmGpuTest,
    ::testing::Combine(::testing::ValuesIn(TinyCases()),
                       ::testing::Values(GroupedGemmPath::kTensorCore, GroupedGemmPath::kSimt),
                       ::testing::Values(GemmElementType::kBf16, GemmElementType::kFloat32)),
    ParamName);

// Mixtral-8x7B: hidden 4096, intermediate 14336 (gate/up stacked: n = 28672). Decode (3 tokens,
// 16-row tiles) and a 17-token batch of the down projection (64-row tiles), four experts empty.
INSTANTIATE_TEST_SUITE_P(
    Mixtral, GroupedGemmGpuTest,
    ::testing::Combine(
        ::testing::Values(
            GroupedCase{"decode_gate_up", {0, 2, 0, 3, 0, 0, 1, 0}, 28672, 4096, 3, false},
            GroupedCase{"decode_down", {0, 2, 0, 3, 0, 0, 1, 0}, 4096, 14336, 3, true},
            GroupedCase{"batch17_down", {7, 0, 5, 0, 1, 0, 4, 0}, 4096, 14336, 17, false}),
        ::testing::Values(GroupedGemmPath::kTensorCore, GroupedGemmPath::kSimt),
        ::testing::Values(GemmElementType::kBf16)),
    ParamName);

TEST(GroupedGemmArgumentsTest, RejectsBadArgumentsNamingTheField) {
  // Argument checks only (nothing reaches the device): runs without a GPU.
  alignas(16) static uint16_t buffer[1024];
  alignas(16) static int32_t offsets[9];
  const auto* p = reinterpret_cast<const __nv_bfloat16*>(buffer);
  const GroupedGemmArgs good{.num_experts = 8,
                             .total_rows = 4,
                             .n = 8,
                             .k = 16,
                             .expert_offsets = offsets,
                             .xp = p,
                             .weights = p,
                             .yp = buffer,
                             .path = GroupedGemmPath::kTensorCore};
  const auto message = [](const GroupedGemmArgs& args) {
    return std::string(GroupedGemm(args, nullptr).message());
  };
  GroupedGemmArgs args = good;
  args.num_experts = 0;
  EXPECT_THAT(message(args), ::testing::HasSubstr("num_experts"));
  args = good;
  args.n = 0;
  EXPECT_THAT(message(args), ::testing::HasSubstr("bad shape"));
  args = good;
  args.expert_offsets = nullptr;
  EXPECT_THAT(message(args), ::testing::HasSubstr("expert_offsets is null"));
  args = good;
  args.xp = nullptr;
  EXPECT_THAT(message(args), ::testing::HasSubstr("xp is null"));
  args = good;
  args.yp = nullptr;
  EXPECT_THAT(message(args), ::testing::HasSubstr("yp is null"));
  args = good;
  args.weights = nullptr;
  EXPECT_THAT(message(args), ::testing::HasSubstr("weights and weight_pointers are both null"));
  args = good;
  args.weight_expert_stride = 100;  // < n * k
  EXPECT_THAT(message(args), ::testing::HasSubstr("weight_expert_stride"));
  args = good;
  args.k = 13;  // the tensor-core path needs k % 8 == 0
  EXPECT_THAT(message(args), ::testing::HasSubstr("k = 13 is not a multiple of 8"));
  args = good;
  args.xp = p + 1;
  EXPECT_THAT(message(args), ::testing::HasSubstr("xp is not 16-byte aligned"));
  args = good;
  args.weight_expert_stride = 8 * 16 + 4;
  EXPECT_THAT(message(args), ::testing::HasSubstr("not a multiple of 8"));
  args = good;
  args.total_rows = 0;  // nothing to do
  EXPECT_TRUE(GroupedGemm(args, nullptr).ok());
}

}  // namespace
}  // namespace flatfleet::cuda
