#include "worker/collectives/compressed_all_reducer.h"

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "tests/collectives/collectives_test_support.h"
#include "worker/collectives/compressed_all_reduce_reference.h"

namespace flatfleet::collectives {
namespace {

using testing::FreshSeed;
using testing::RandomActivations;
using testing::RunRanksAsThreads;

struct RankResult {
  std::vector<float> output;
  Int8Blocks reduced;
  AllReduceStats stats;
};

// Runs one CompressedAllReducer call on every rank (threads, Gloo over loopback) and returns each
// rank's output, reduced blocks and stats.
std::vector<RankResult> RunCompressed(int size, const std::vector<std::vector<float>>& inputs,
                                      CompressedAllReduceOptions options) {
  std::vector<RankResult> results(size);
  RunRanksAsThreads(size, [&](Communicator& communicator) {
    CompressedAllReducer reducer(communicator, options);
    RankResult& result = results[communicator.rank()];
    result.output = inputs[communicator.rank()];
    const absl::Status status = reducer.AllReduceSum(absl::MakeSpan(result.output));
    ASSERT_TRUE(status.ok()) << status;
    result.reduced = reducer.last_reduced();
    result.stats = reducer.stats();
  });
  return results;
}

TEST(CompressedAllReducerTest, EqualsReferenceExactlyAndStaysWithinBound) {
  std::mt19937 rng(FreshSeed());
  double worst_ratio = 0.0, worst_relative = 0.0;
  for (int size : {1, 2, 3, 4}) {
    for (int block_size : {128, 256}) {
      for (int64_t n : {int64_t{1}, int64_t{5}, int64_t{block_size + 1}, int64_t{1000},
                        int64_t{7 * block_size - 3}, int64_t{(1 << 20) + 77}}) {
        if (n > 100000 && block_size == 256 && size != 4) continue;  // keep the run short
        std::vector<std::vector<float>> inputs;
        for (int r = 0; r < size; ++r) inputs.push_back(RandomActivations(n, rng));
        const auto trace = CompressedAllReduceReference(inputs, block_size);
        ASSERT_TRUE(trace.ok()) << trace.status();
        const auto results =
            RunCompressed(size, inputs, {.enabled = true, .block_size = block_size});
        for (int r = 0; r < size; ++r) {
          SCOPED_TRACE(::testing::Message() << "size=" << size << " block=" << block_size
                                            << " n=" << n << " rank=" << r);
          ASSERT_EQ(results[r].output.size(), n);
          ASSERT_EQ(results[r].reduced.codes, trace->reduced.codes);
          ASSERT_EQ(results[r].reduced.scales, trace->reduced.scales);
          ASSERT_EQ(std::memcmp(results[r].output.data(), trace->output.data(), n * sizeof(float)),
                    0);
        }
        for (int64_t i = 0; i < n; ++i) {
          double exact = 0.0, magnitude = 0.0;
          for (const auto& input : inputs) {
            exact += input[i];
            magnitude += std::fabs(input[i]);
          }
          const double bound = CompressedAllReduceErrorBound(*trace, block_size, i);
          const double error = std::fabs(results[0].output[i] - exact);
          ASSERT_LE(error, bound + 4 * size * 1.2e-7 * magnitude) << "i=" << i;
          worst_ratio = std::max(worst_ratio, error / bound);
          // Relative to the block's largest reduced magnitude (127 reduced scales).
          worst_relative =
              std::max(worst_relative, error / (127.0 * trace->reduced.scales[i / block_size]));
        }
      }
    }
  }
  std::printf(
      "[ measured ] worst error / analytic bound = %.3f, worst error / block absmax = %.2e\n",
      worst_ratio, worst_relative);
}

TEST(CompressedAllReducerTest, DisabledIsPlainFp32Sum) {
  std::mt19937 rng(FreshSeed());
  for (int size : {1, 2, 3, 4}) {
    const int64_t n = 4099;
    std::vector<std::vector<float>> inputs;
    for (int r = 0; r < size; ++r) inputs.push_back(RandomActivations(n, rng));
    const auto results = RunCompressed(size, inputs, {.enabled = false, .block_size = 128});
    for (int64_t i = 0; i < n; ++i) {
      double exact = 0.0, magnitude = 0.0;
      for (const auto& input : inputs) {
        exact += input[i];
        magnitude += std::fabs(input[i]);
      }
      for (int r = 0; r < size; ++r) {
        ASSERT_NEAR(results[r].output[i], exact, 4 * size * 1.2e-7 * magnitude) << "i=" << i;
      }
    }
    EXPECT_EQ(results[0].stats.raw_bytes, results[0].stats.wire_bytes);
    EXPECT_EQ(results[0].stats.calls, 1);
  }
}

TEST(CompressedAllReducerTest, WireBytesAreAboutAQuarterOfRaw) {
  std::mt19937 rng(FreshSeed());
  for (int size : {2, 4}) {
    const int64_t n = (1 << 20) + 5;
    std::vector<std::vector<float>> inputs;
    for (int r = 0; r < size; ++r) inputs.push_back(RandomActivations(n, rng));
    for (int block_size : {128, 256}) {
      const auto results = RunCompressed(size, inputs, {.enabled = true, .block_size = block_size});
      for (int r = 0; r < size; ++r) {
        const AllReduceStats& stats = results[r].stats;
        EXPECT_EQ(stats.calls, 1);
        EXPECT_EQ(stats.raw_bytes, 2 * (size - 1) * n * 4 / size);
        // INT8 codes plus one float scale per block: 4 / (1 + 4 / block_size) of the FP32 bytes.
        const double ideal = 4.0 / (1.0 + 4.0 / block_size);
        if (r == 0) {
          std::printf(
              "[ measured ] size=%d block=%d raw=%lld wire=%lld ratio=%.3f (ideal %.3f), "
              "%.1f ms (%.1f ms communicating)\n",
              size, block_size, static_cast<long long>(stats.raw_bytes),
              static_cast<long long>(stats.wire_bytes), stats.compression_ratio(), ideal,
              stats.seconds_total * 1e3, stats.seconds_communicating * 1e3);
        }
        EXPECT_GT(stats.compression_ratio(), ideal * 0.99);
        EXPECT_LE(stats.compression_ratio(), ideal * 1.0001);
        EXPECT_GT(stats.seconds_total, 0.0);
        EXPECT_GE(stats.seconds_total, stats.seconds_communicating);
      }
    }
  }
}

TEST(CompressedAllReducerTest, RepeatedCallsStayCorrectAndAccumulateStats) {
  std::mt19937 rng(FreshSeed());
  constexpr int kSize = 3, kCalls = 5;
  constexpr int64_t n = 2000;
  std::vector<std::vector<std::vector<float>>> inputs(kCalls);
  for (auto& call : inputs) {
    for (int r = 0; r < kSize; ++r) call.push_back(RandomActivations(n, rng));
  }
  RunRanksAsThreads(kSize, [&](Communicator& communicator) {
    CompressedAllReducer reducer(communicator, {});
    for (int call = 0; call < kCalls; ++call) {
      std::vector<float> data = inputs[call][communicator.rank()];
      ASSERT_TRUE(reducer.AllReduceSum(absl::MakeSpan(data)).ok());
      const auto trace = CompressedAllReduceReference(inputs[call], reducer.options().block_size);
      ASSERT_TRUE(trace.ok());
      ASSERT_EQ(std::memcmp(data.data(), trace->output.data(), n * sizeof(float)), 0) << call;
    }
    EXPECT_EQ(reducer.stats().calls, kCalls);
    EXPECT_EQ(reducer.stats().raw_bytes, kCalls * (2 * (kSize - 1) * n * 4 / kSize));
  });
}

}  // namespace
}  // namespace flatfleet::collectives
