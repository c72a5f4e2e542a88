// MoeScratchBytes / CarveMoeScratch (kernels/cuda/moe_scratch.h): host-only pointer arithmetic,
// so this runs without a GPU (no memory is touched).
#include "kernels/cuda/moe_scratch.h"

#include <algorithm>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace flatfleet::cuda {
namespace {

TEST(MoeScratchTest, ArraysAreAlignedDisjointAndInsideTheBuffer) {
  // Mixtral-8x7B at 4096 tokens, and an odd tiny shape.
  for (const MoeScratchShape shape :
       {MoeScratchShape{4096, 2, 8, 4096, 14336}, MoeScratchShape{3, 2, 8, 256, 512},
        MoeScratchShape{1, 1, 1, 7, 5}}) {
    const size_t bytes = MoeScratchBytes(shape);
    const uintptr_t base = uintptr_t{1} << 40;  // never dereferenced
    auto scratch = CarveMoeScratch(shape, reinterpret_cast<void*>(base), bytes);
    ASSERT_TRUE(scratch.ok()) << scratch.status();
    const int64_t permuted = shape.rows * shape.top_k;
    const std::vector<std::pair<const void*, size_t>> arrays = {
        {scratch->expert_ids, permuted * 4},
        {scratch->expert_weights, permuted * 4},
        {scratch->expert_offsets, (shape.num_experts + 1) * 4},
        {scratch->permuted_source_row, permuted * 4},
        {scratch->inverse_permutation, permuted * 4},
        {scratch->xp, permuted * shape.hidden * 2},
        {scratch->gate_up, permuted * 2 * shape.intermediate * 2},
        {scratch->activated, permuted * shape.intermediate * 2},
        {scratch->down, permuted * shape.hidden * 2}};
    std::vector<std::pair<uintptr_t, uintptr_t>> ranges;
    for (const auto& [pointer, size] : arrays) {
      const auto begin = reinterpret_cast<uintptr_t>(pointer);
      EXPECT_EQ(begin % 256, 0u);
      EXPECT_GE(begin, base);
      EXPECT_LE(begin + size, base + bytes);
      ranges.push_back({begin, begin + size});
    }
    std::sort(ranges.begin(), ranges.end());
    for (size_t i = 1; i < ranges.size(); ++i) EXPECT_LE(ranges[i - 1].second, ranges[i].first);
  }
}

TEST(MoeScratchTest, RejectsBadShapesAndSmallBuffers) {
  const MoeScratchShape shape{16, 2, 8, 256, 512};
  void* base = reinterpret_cast<void*>(uintptr_t{1} << 40);
  EXPECT_EQ(MoeScratchBytes({0, 2, 8, 256, 512}), 0u);
  EXPECT_THAT(std::string(CarveMoeScratch({16, 0, 8, 256, 512}, base, 1 << 30).status().message()),
              ::testing::HasSubstr("bad shape"));
  EXPECT_THAT(
      std::string(CarveMoeScratch(shape, base, MoeScratchBytes(shape) - 1).status().message()),
      ::testing::HasSubstr("scratch_bytes"));
  EXPECT_THAT(
      std::string(
          CarveMoeScratch(shape, static_cast<char*>(base) + 16, 1 << 30).status().message()),
      ::testing::HasSubstr("aligned"));
  EXPECT_THAT(std::string(CarveMoeScratch(shape, nullptr, 1 << 30).status().message()),
              ::testing::HasSubstr("scratch is null"));
}

}  // namespace
}  // namespace flatfleet::cuda
