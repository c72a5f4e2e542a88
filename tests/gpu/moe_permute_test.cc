// The MoE token permutation (kernels/cuda/moe_permute.h) against a host stable counting sort:
// integer outputs, so compared exactly; the gather is a copy, compared bit for bit.
#include "kernels/cuda/moe_permute.h"

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "tests/gpu/bf16_test_util.h"
#include "tests/gpu/gpu_test_util.h"
#include "tests/quant/test_random.h"

namespace flatfleet::cuda {
namespace {

using testing::AsBf16;
using testing::DeviceBuffer;
using testing::Poison;

struct Permutation {
  std::vector<int32_t> offsets, source_row, inverse;
};

// Obviously right: for each expert in order, the (row, slot) entries naming it in flat order.
Permutation HostPermutation(const std::vector<int32_t>& ids, int64_t rows, int64_t top_k,
                            int64_t num_experts) {
  const int64_t total = rows * top_k;
  Permutation p{std::vector<int32_t>(num_experts + 1), std::vector<int32_t>(total, -1),
                std::vector<int32_t>(total, -1)};
  int32_t position = 0;
  for (int64_t e = 0; e < num_experts; ++e) {
    p.offsets[e] = position;
    for (int64_t i = 0; i < total; ++i) {
      if (ids[i] != e) continue;
      p.source_row[position] = static_cast<int32_t>(i / top_k);
      p.inverse[i] = position++;
    }
  }
  p.offsets[num_experts] = position;
  return p;
}

class MoePermuteGpuTest : public quant::test_util::RandomTest {
 protected:
  // top_k distinct experts per row in random order, drawn uniformly or (skewed) for 4 rows in
  // 5 from the first top_k + 1 experts only, so that some experts get most rows.
  std::vector<int32_t> RandomIds(int64_t rows, int64_t top_k, int64_t num_experts, bool skewed) {
    std::vector<int32_t> ids(rows * top_k);
    std::vector<int32_t> experts(num_experts);
    for (int64_t r = 0; r < rows; ++r) {
      std::iota(experts.begin(), experts.end(), 0);
      const bool hot = skewed && UniformInt(0, 4) != 0;
      const int64_t pool = hot ? std::min(num_experts, top_k + 1) : num_experts;
      std::shuffle(experts.begin(), experts.begin() + pool, rng_);
      std::copy(experts.begin(), experts.begin() + top_k, ids.begin() + r * top_k);
    }
    return ids;
  }

  void CheckPermutation(const std::vector<int32_t>& ids, int64_t rows, int64_t top_k,
                        int64_t num_experts) {
    const int64_t total = rows * top_k;
    const Permutation expected = HostPermutation(ids, rows, top_k, num_experts);
    DeviceBuffer<int32_t> d_ids(ids.empty() ? std::vector<int32_t>{0} : ids);
    DeviceBuffer<int32_t> d_offsets(num_experts + 1);
    DeviceBuffer<int32_t> d_source(std::max<int64_t>(total, 1));
    DeviceBuffer<int32_t> d_inverse(std::max<int64_t>(total, 1));
    Poison(d_offsets, num_experts + 1);
    Poison(d_source, total);
    Poison(d_inverse, total);
    const absl::Status status = ComputeMoePermutation({.expert_ids = d_ids.get(),
                                                       .rows = rows,
                                                       .top_k = top_k,
                                                       .num_experts = num_experts,
                                                       .expert_offsets = d_offsets.get(),
                                                       .permuted_source_row = d_source.get(),
                                                       .inverse_permutation = d_inverse.get()},
                                                      nullptr);
    ASSERT_TRUE(status.ok()) << status;
    FF_CUDA_ASSERT(cudaDeviceSynchronize());
    EXPECT_EQ(d_offsets.ToHost(), expected.offsets);
    if (total > 0) {
      EXPECT_EQ(d_source.ToHost(), expected.source_row);
      EXPECT_EQ(d_inverse.ToHost(), expected.inverse);
    }
  }
};

struct PermuteCase {
  int64_t rows, top_k, num_experts;
  bool skewed;
};

class MoePermuteShapesTest : public MoePermuteGpuTest,
                             public ::testing::WithParamInterface<PermuteCase> {};

TEST_P(MoePermuteShapesTest, MatchesHostStableCountingSort) {
  FF_SKIP_WITHOUT_GPU();
  const auto [rows, top_k, num_experts, skewed] = GetParam();
  CheckPermutation(RandomIds(rows, top_k, num_experts, skewed), rows, top_k, num_experts);
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, MoePermuteShapesTest,
    ::testing::Values(
        // Decode and small batches (Mixtral: 8 experts, top-2), one tile of 1024 entries.
        PermuteCase{1, 2, 8, false}, PermuteCase{2, 2, 8, false}, PermuteCase{7, 2, 8, true},
        PermuteCase{64, 2, 8, false}, PermuteCase{511, 2, 8, false},
        // Several tiles, including a partial last one.
        PermuteCase{513, 2, 8, true}, PermuteCase{4097, 2, 8, false},
        PermuteCase{16384, 2, 8, false},
        // Other expert counts and top-k, up to the limit.
        PermuteCase{300, 8, 64, false}, PermuteCase{100, 1, 3, false},
        PermuteCase{1000, 6, 256, true}, PermuteCase{33, 4, 4, false}),
    [](const auto& info) {
      return absl::StrCat("rows", info.param.rows, "_k", info.param.top_k, "_e",
                          info.param.num_experts, info.param.skewed ? "_skewed" : "");
    });

TEST_F(MoePermuteGpuTest, OneExpertTakesAllRowsAndTheOthersStayEmpty) {
  FF_SKIP_WITHOUT_GPU();
  const int64_t rows = 2000, num_experts = 8;
  CheckPermutation(std::vector<int32_t>(rows, 5), rows, 1, num_experts);
  std::vector<int32_t> pairs;
  for (int64_t r = 0; r < rows; ++r) {
    pairs.push_back(r % 2 == 0 ? 6 : 2);  // every row picks experts 2 and 6, in either order
    pairs.push_back(r % 2 == 0 ? 2 : 6);
  }
  CheckPermutation(pairs, rows, 2, num_experts);
}

TEST_F(MoePermuteGpuTest, ZeroRowsWritesZeroOffsets) {
  FF_SKIP_WITHOUT_GPU();
  CheckPermutation({}, 0, 2, 8);
}

// Ids outside [0, E) are dropped: inverse -1, and the permuted rows past offsets[E] get -1.
TEST_F(MoePermuteGpuTest, DropsOutOfRangeIds) {
  FF_SKIP_WITHOUT_GPU();
  std::vector<int32_t> ids = RandomIds(50, 2, 8, false);
  ids[3] = 8;
  ids[17] = -1;
  ids[99] = 1000;
  CheckPermutation(ids, 50, 2, 8);
}

TEST_F(MoePermuteGpuTest, GatherCopiesSourceRowsAndZeroFillsDroppedOnes) {
  FF_SKIP_WITHOUT_GPU();
  for (const int64_t hidden : {256, 4096, 13}) {  // 16-byte chunks, and element copies
    SCOPED_TRACE(absl::StrCat("hidden ", hidden));
    const int64_t rows = 37, permuted_rows = 74;
    std::vector<uint16_t> x(rows * hidden);
    for (auto& v : x) v = static_cast<uint16_t>(UniformInt(0, 0xffff));
    std::vector<int32_t> source(permuted_rows);
    for (auto& s : source) s = static_cast<int32_t>(UniformInt(0, rows - 1));
    source[5] = -1;
    DeviceBuffer<uint16_t> d_x(x), d_xp(permuted_rows * hidden);
    DeviceBuffer<int32_t> d_source(source);
    Poison(d_xp, permuted_rows * hidden);
    const absl::Status status = GatherPermutedRows({.x = AsBf16(d_x),
                                                    .source_rows = rows,
                                                    .hidden = hidden,
                                                    .permuted_source_row = d_source.get(),
                                                    .permuted_rows = permuted_rows,
                                                    .xp = AsBf16(d_xp)},
                                                   nullptr);
    ASSERT_TRUE(status.ok()) << status;
    FF_CUDA_ASSERT(cudaDeviceSynchronize());
    const std::vector<uint16_t> xp = d_xp.ToHost();
    for (int64_t p = 0; p < permuted_rows; ++p) {
      for (int64_t c = 0; c < hidden; ++c) {
        const uint16_t expected = source[p] < 0 ? 0 : x[source[p] * hidden + c];
        ASSERT_EQ(xp[p * hidden + c], expected) << "permuted row " << p << " column " << c;
      }
    }
  }
}

TEST(MoePermuteArgumentsTest, RejectsBadArgumentsNamingTheField) {
  // Argument checks only (nothing reaches the device): runs without a GPU.
  int32_t buffer[4];
  const MoePermuteArgs good{.expert_ids = buffer,
                            .rows = 1,
                            .top_k = 2,
                            .num_experts = 8,
                            .expert_offsets = buffer,
                            .permuted_source_row = buffer,
                            .inverse_permutation = buffer};
  const auto message = [](const MoePermuteArgs& args) {
    return std::string(ComputeMoePermutation(args, nullptr).message());
  };
  MoePermuteArgs args = good;
  args.num_experts = 257;
  EXPECT_THAT(message(args), ::testing::HasSubstr("num_experts"));
  args = good;
  args.top_k = 9;
  EXPECT_THAT(message(args), ::testing::HasSubstr("top_k"));
  args = good;
  args.rows = int64_t{1} << 31;
  EXPECT_THAT(message(args), ::testing::HasSubstr("rows"));
  args = good;
  args.expert_offsets = nullptr;
  EXPECT_THAT(message(args), ::testing::HasSubstr("expert_offsets is null"));
  args = good;
  args.inverse_permutation = nullptr;
  EXPECT_THAT(message(args), ::testing::HasSubstr("inverse_permutation is null"));

  MoeGatherArgs gather{.x = nullptr, .source_rows = 2, .hidden = 8, .permuted_rows = 4};
  EXPECT_THAT(std::string(GatherPermutedRows(gather, nullptr).message()),
              ::testing::HasSubstr("x is null"));
  gather.hidden = 0;
  EXPECT_THAT(std::string(GatherPermutedRows(gather, nullptr).message()),
              ::testing::HasSubstr("bad shape"));
}

}  // namespace
}  // namespace flatfleet::cuda
