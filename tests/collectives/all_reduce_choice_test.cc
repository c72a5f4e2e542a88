#include "worker/collectives/all_reduce_choice.h"

#include <array>

#include "gtest/gtest.h"

namespace flatfleet::collectives {
namespace {

constexpr int64_t kMiB = int64_t{1} << 20;

// The measured 2x H200 table (bench/RESULTS.md): compression lost at every size below 256 MiB in
// at least one of the two runs, so a Llama-3-70B decode all-reduce (~2 MiB at batch 64) and even
// a 16 MiB prefill one stay on NCCL.
TEST(AllReduceChoiceTest, MeasuredTableKeepsNcclBelowTheCrossover) {
  for (int64_t bytes :
       {int64_t{0}, int64_t{16} << 10, 2 * kMiB, 16 * kMiB, 64 * kMiB, 256 * kMiB - 1}) {
    SCOPED_TRACE(bytes);
    EXPECT_EQ(ChooseDeviceAllReduce(bytes, 2, /*compression_allowed=*/true),
              AllReduceAlgorithm::kPlain);
  }
  EXPECT_EQ(ChooseDeviceAllReduce(256 * kMiB, 2, true), AllReduceAlgorithm::kInt8Compressed);
  EXPECT_EQ(ChooseDeviceAllReduce(1024 * kMiB, 2, true), AllReduceAlgorithm::kInt8Compressed);
}

TEST(AllReduceChoiceTest, NeverCompressesWhenNotAllowed) {
  EXPECT_EQ(ChooseDeviceAllReduce(1024 * kMiB, 2, /*compression_allowed=*/false),
            AllReduceAlgorithm::kPlain);
}

TEST(AllReduceChoiceTest, UnmeasuredGroupSizesStayPlain) {
  for (int ranks : {1, 3, 4, 8}) {
    SCOPED_TRACE(ranks);
    EXPECT_EQ(ChooseDeviceAllReduce(1024 * kMiB, ranks, true), AllReduceAlgorithm::kPlain);
  }
}

TEST(AllReduceChoiceTest, PicksTheRowWithTheLargestStartNotAboveTheMessage) {
  // Rows out of order, two group sizes.
  const std::array<AllReduceThreshold, 4> table = {{
      {4, 8 * kMiB, AllReduceAlgorithm::kPlain},
      {4, 0, AllReduceAlgorithm::kPlain},
      {4, 1 * kMiB, AllReduceAlgorithm::kInt8Compressed},
      {2, 0, AllReduceAlgorithm::kInt8Compressed},
  }};
  EXPECT_EQ(ChooseDeviceAllReduce(kMiB - 1, 4, true, table), AllReduceAlgorithm::kPlain);
  EXPECT_EQ(ChooseDeviceAllReduce(kMiB, 4, true, table), AllReduceAlgorithm::kInt8Compressed);
  EXPECT_EQ(ChooseDeviceAllReduce(8 * kMiB - 1, 4, true, table),
            AllReduceAlgorithm::kInt8Compressed);
  EXPECT_EQ(ChooseDeviceAllReduce(8 * kMiB, 4, true, table), AllReduceAlgorithm::kPlain);
  EXPECT_EQ(ChooseDeviceAllReduce(1, 2, true, table), AllReduceAlgorithm::kInt8Compressed);
}

}  // namespace
}  // namespace flatfleet::collectives
