// Host test (no GPU needed) of the chunk arithmetic the compressed all-reduce kernels rely on:
// chunks partition the blocks, every block's owner holds it, and slots are aligned and big enough.
#include <algorithm>
#include <random>

#include "gtest/gtest.h"
#include "kernels/cuda/int8_block_all_reduce.h"
#include "tests/gpu/gpu_test_random.h"

namespace flatfleet::cuda {
namespace {

void ExpectConsistent(const Int8ChunkLayout& layout) {
  const int64_t n = layout.num_ranks;
  ASSERT_EQ(Int8ChunkBegin(layout, 0), 0);
  ASSERT_EQ(Int8ChunkBegin(layout, n), layout.num_blocks);
  int64_t largest = 0;
  for (int64_t r = 0; r < n; ++r) {
    const int64_t blocks = Int8ChunkBegin(layout, r + 1) - Int8ChunkBegin(layout, r);
    ASSERT_GE(blocks, 0);
    largest = std::max(largest, blocks);
  }
  EXPECT_EQ(layout.max_chunk_blocks, largest);
  EXPECT_LE(largest, (layout.num_blocks + n - 1) / n);
  EXPECT_EQ(layout.scales_offset % 16, 0);
  EXPECT_EQ(layout.slot_bytes % 16, 0);
  EXPECT_GE(layout.scales_offset, largest * layout.block_size);
  EXPECT_GE(layout.slot_bytes - layout.scales_offset, largest * 4);
}

void ExpectOwnerHolds(const Int8ChunkLayout& layout, int64_t block) {
  const int64_t owner = Int8ChunkOwner(layout, block);
  ASSERT_GE(owner, 0);
  ASSERT_LT(owner, layout.num_ranks);
  EXPECT_LE(Int8ChunkBegin(layout, owner), block) << "block " << block;
  EXPECT_LT(block, Int8ChunkBegin(layout, owner + 1)) << "block " << block;
}

TEST(Int8ChunkLayoutTest, ChunksPartitionBlocksAndOwnersHoldTheirBlocks) {
  for (int32_t ranks = 1; ranks <= 9; ++ranks) {
    for (int32_t block_size : {1, 3, 4, 7, 128}) {
      for (int64_t elements = 0; elements <= 700; ++elements) {
        const Int8ChunkLayout layout = MakeInt8ChunkLayout(elements, block_size, ranks);
        SCOPED_TRACE(::testing::Message()
                     << "ranks=" << ranks << " block=" << block_size << " elements=" << elements);
        ASSERT_EQ(layout.num_blocks, (elements + block_size - 1) / block_size);
        ExpectConsistent(layout);
        for (int64_t block = 0; block < layout.num_blocks; ++block) {
          ExpectOwnerHolds(layout, block);
        }
      }
    }
  }
}

TEST(Int8ChunkLayoutTest, LargeVectorsDoNotOverflow) {
  const uint64_t seed = testing::FreshSeed();
  SCOPED_TRACE(::testing::Message() << "seed " << seed);
  std::mt19937_64 rng(seed);
  for (int32_t ranks : {2, 8, 16}) {
    // 2^31 + 5 floats (8 GiB) in blocks of 128.
    const Int8ChunkLayout layout = MakeInt8ChunkLayout((int64_t{1} << 31) + 5, 128, ranks);
    ExpectConsistent(layout);
    std::uniform_int_distribution<int64_t> any_block(0, layout.num_blocks - 1);
    for (int i = 0; i < 10000; ++i) ExpectOwnerHolds(layout, any_block(rng));
    ExpectOwnerHolds(layout, 0);
    ExpectOwnerHolds(layout, layout.num_blocks - 1);
  }
}

}  // namespace
}  // namespace flatfleet::cuda
