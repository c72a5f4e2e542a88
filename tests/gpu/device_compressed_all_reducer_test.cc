// The GPU INT8-compressed all-reduce equals the CPU reference (CompressedAllReduceReference) bit
// for bit: output floats, reduced codes and reduced scales, on fresh random inputs with tails.
#include "worker/collectives/device_compressed_all_reducer.h"

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "tests/gpu/gpu_test_util.h"
#include "tests/gpu/nccl_test_group.h"
#include "worker/collectives/compressed_all_reduce_reference.h"

namespace flatfleet::collectives {
namespace {

using cuda::testing::DeviceBuffer;
using testing::FreshSeed;
using testing::RandomActivations;
using testing::RunNcclRanks;

struct RankResult {
  absl::Status status;
  std::vector<float> output;
  Int8Blocks reduced;
  AllReduceStats stats;
};

// One compressed all-reduce on `size` GPUs (threads), each rank starting from inputs[rank].
std::vector<RankResult> RunCompressed(int size, const std::vector<std::vector<float>>& inputs,
                                      DeviceCompressedAllReduceOptions options) {
  std::vector<RankResult> results(size);
  RunNcclRanks(size, [&](NcclCommunicator& communicator) {
    RankResult& result = results[communicator.rank()];
    auto reducer = DeviceCompressedAllReducer::Create(communicator, options);
    ASSERT_TRUE(reducer.ok()) << reducer.status();
    const std::vector<float>& input = inputs[communicator.rank()];
    DeviceBuffer<float> data(input);
    result.status = (*reducer)->AllReduceSum(data.get(), input.size());
    if (result.status.ok()) result.status = (*reducer)->Synchronize();
    if (!result.status.ok()) return;
    result.output = data.ToHost();
    if (options.enabled) {
      absl::StatusOr<Int8Blocks> reduced = (*reducer)->LastReduced();
      ASSERT_TRUE(reduced.ok()) << reduced.status();
      result.reduced = *std::move(reduced);
    }
    result.stats = (*reducer)->stats();
  });
  return results;
}

// Rank 0's first block exercises exact ties: absmax 127 gives scale 1, so x.5 rounds to even.
void PlantTies(std::vector<float>& values, int block_size) {
  const float ties[] = {127.0f, 2.5f, -3.5f, 0.5f, -0.5f, 1.5f, 126.5f, -126.5f};
  for (int i = 0; i < block_size && i < static_cast<int>(values.size()); ++i) {
    values[i] = ties[i % 8];
  }
}

void ExpectEqualsReference(int size, int block_size, int64_t count, std::mt19937& rng) {
  std::vector<std::vector<float>> inputs;
  for (int r = 0; r < size; ++r) inputs.push_back(RandomActivations(count, block_size, rng));
  PlantTies(inputs[0], block_size);
  const auto trace = CompressedAllReduceReference(inputs, block_size);
  ASSERT_TRUE(trace.ok()) << trace.status();
  const std::vector<RankResult> results =
      RunCompressed(size, inputs, {.enabled = true, .block_size = block_size});
  for (int r = 0; r < size; ++r) {
    SCOPED_TRACE(::testing::Message()
                 << "ranks=" << size << " block=" << block_size << " n=" << count << " rank=" << r);
    ASSERT_TRUE(results[r].status.ok()) << results[r].status;
    ASSERT_EQ(results[r].output.size(), count);
    EXPECT_EQ(results[r].reduced.codes, trace->reduced.codes);
    EXPECT_EQ(results[r].reduced.scales, trace->reduced.scales);
    int64_t mismatches = 0, first = -1;
    for (int64_t i = 0; i < count; ++i) {
      if (std::memcmp(&results[r].output[i], &trace->output[i], sizeof(float)) != 0) {
        if (first < 0) first = i;
        ++mismatches;
      }
    }
    EXPECT_EQ(mismatches, 0) << "first at " << first << ": " << results[r].output[first] << " vs "
                             << trace->output[first];
    EXPECT_EQ(results[r].stats.calls, 1);
  }
}

TEST(DeviceCompressedAllReducerTest, OneRankEqualsReferenceBitForBit) {
  FF_SKIP_WITH_FEWER_GPUS(1);
  std::mt19937 rng(FreshSeed());
  for (int block_size : {128, 7}) {
    for (int64_t count : {int64_t{1}, int64_t{3 * block_size + 5}, int64_t{100003}}) {
      ExpectEqualsReference(1, block_size, count, rng);
    }
  }
}

TEST(DeviceCompressedAllReducerTest, TwoRanksEqualReferenceBitForBit) {
  FF_SKIP_WITH_FEWER_GPUS(2);
  std::mt19937 rng(FreshSeed());
  // Block sizes: the default, a larger one, and ones that take the scalar (non-quad) path. Counts:
  // fewer blocks than ranks, tails that are neither whole blocks nor split evenly, and ~4M.
  for (int block_size : {128, 256, 100, 7}) {
    for (int64_t count : {int64_t{1}, int64_t{block_size + 1}, int64_t{5 * block_size - 3},
                          int64_t{1000003}, int64_t{(1 << 22) + 17}}) {
      if (count > 2000000 && block_size != 128) continue;  // one large case is enough
      ExpectEqualsReference(2, block_size, count, rng);
    }
  }
}

TEST(DeviceCompressedAllReducerTest, DisabledIsThePlainFloatSum) {
  FF_SKIP_WITH_FEWER_GPUS(2);
  std::mt19937 rng(FreshSeed());
  const int64_t count = 300001;
  const std::vector<std::vector<float>> inputs = {RandomActivations(count, 128, rng),
                                                  RandomActivations(count, 128, rng)};
  const auto results = RunCompressed(2, inputs, {.enabled = false});
  for (int r = 0; r < 2; ++r) {
    ASSERT_TRUE(results[r].status.ok()) << results[r].status;
    for (int64_t i = 0; i < count; ++i) {
      ASSERT_EQ(results[r].output[i], inputs[0][i] + inputs[1][i]) << "rank " << r << " i " << i;
    }
  }
}

TEST(DeviceCompressedAllReducerTest, NonFiniteInputIsReportedOnEveryRank) {
  FF_SKIP_WITH_FEWER_GPUS(2);
  std::mt19937 rng(FreshSeed());
  const int64_t count = 5000;
  std::vector<std::vector<float>> inputs = {RandomActivations(count, 128, rng),
                                            RandomActivations(count, 128, rng)};
  inputs[1][4321] = std::numeric_limits<float>::quiet_NaN();
  const auto results = RunCompressed(2, inputs, {.enabled = true, .block_size = 128});
  EXPECT_EQ(results[0].status.code(), absl::StatusCode::kInvalidArgument) << results[0].status;
  EXPECT_EQ(results[1].status.code(), absl::StatusCode::kInvalidArgument) << results[1].status;
  EXPECT_NE(results[1].status.message().find("rank 1"), std::string::npos) << results[1].status;
}

}  // namespace
}  // namespace flatfleet::collectives
