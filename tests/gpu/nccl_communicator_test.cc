// NcclCommunicator on real GPUs: every collective against its definition on fresh random data,
// and the bounded waits (a peer that never joins, a peer that skips a collective).
#include "worker/collectives/nccl_communicator.h"

#include <atomic>
#include <chrono>
#include <cstring>
#include <random>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "tests/gpu/gpu_test_util.h"
#include "tests/gpu/nccl_test_group.h"

namespace flatfleet::collectives {
namespace {

using cuda::testing::DeviceBuffer;
using testing::FreshSeed;
using testing::RunNcclRanks;

std::vector<float> RandomFloats(int64_t count, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> uniform(-100.0f, 100.0f);
  std::vector<float> values(count);
  for (float& v : values) v = uniform(rng);
  return values;
}

std::vector<uint8_t> RandomBytes(int64_t count, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> bytes(count);
  for (uint8_t& b : bytes) b = static_cast<uint8_t>(rng());
  return bytes;
}

TEST(NcclCommunicatorTest, RejectsBadOptionsWithoutTouchingNccl) {
  auto short_id = NcclCommunicator::Create({.rank = 0, .size = 2, .unique_id = "abc"});
  EXPECT_EQ(short_id.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(short_id.status().message().find("nccl_unique_id"), std::string::npos);
  auto bad_rank = NcclCommunicator::Create(
      {.rank = 2, .size = 2, .unique_id = std::string(NCCL_UNIQUE_ID_BYTES, '\0')});
  EXPECT_EQ(bad_rank.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(NcclCommunicatorTest, AllReduceSumEqualsTheFloatSumInRankOrder) {
  FF_SKIP_WITH_FEWER_GPUS(2);
  const uint32_t seed = FreshSeed();
  for (int64_t count : {int64_t{1}, int64_t{1000}, int64_t{(1 << 20) + 3}}) {
    // With two ranks the float sum x0 + x1 has one correctly rounded value, whatever the order.
    const std::vector<float> x0 = RandomFloats(count, seed);
    const std::vector<float> x1 = RandomFloats(count, seed + 1);
    std::vector<float> expected(count);
    for (int64_t i = 0; i < count; ++i) expected[i] = x0[i] + x1[i];
    std::vector<std::vector<float>> outputs(2);
    RunNcclRanks(2, [&](NcclCommunicator& communicator) {
      const int rank = communicator.rank();
      DeviceBuffer<float> data(rank == 0 ? x0 : x1);
      ASSERT_TRUE(communicator.AllReduceSum(data.get(), count).ok());
      const absl::Status synced = communicator.Synchronize();
      ASSERT_TRUE(synced.ok()) << synced;
      outputs[rank] = data.ToHost();
    });
    for (int rank = 0; rank < 2; ++rank) {
      ASSERT_EQ(outputs[rank].size(), count);
      EXPECT_EQ(std::memcmp(outputs[rank].data(), expected.data(), count * sizeof(float)), 0)
          << "rank " << rank << " count " << count;
    }
  }
}

TEST(NcclCommunicatorTest, AllGatherAllToAllBroadcastAndBarrier) {
  FF_SKIP_WITH_FEWER_GPUS(2);
  const uint32_t seed = FreshSeed();
  constexpr int kSize = 2;
  const int64_t bytes = 4099;  // odd: no alignment assumptions
  std::vector<std::vector<uint8_t>> inputs, broadcast_inputs;
  for (int r = 0; r < kSize; ++r) {
    inputs.push_back(RandomBytes(kSize * bytes, seed + r));
    broadcast_inputs.push_back(RandomBytes(bytes, seed + 10 + r));
  }
  std::vector<std::vector<uint8_t>> gathered(kSize), exchanged(kSize), broadcast(kSize);
  RunNcclRanks(kSize, [&](NcclCommunicator& communicator) {
    const int rank = communicator.rank();
    DeviceBuffer<uint8_t> input(inputs[rank]);
    DeviceBuffer<uint8_t> gather_out(kSize * bytes), all_to_all_out(kSize * bytes);
    DeviceBuffer<uint8_t> root_data(broadcast_inputs[rank]);
    // AllGather sends the first slot of the input.
    ASSERT_TRUE(communicator.AllGather(input.get(), bytes, gather_out.get()).ok());
    ASSERT_TRUE(communicator.AllToAll(input.get(), bytes, all_to_all_out.get()).ok());
    ASSERT_TRUE(communicator.Broadcast(root_data.get(), bytes, /*root=*/1).ok());
    const absl::Status barrier = communicator.Barrier();
    ASSERT_TRUE(barrier.ok()) << barrier;
    gathered[rank] = gather_out.ToHost();
    exchanged[rank] = all_to_all_out.ToHost();
    broadcast[rank] = root_data.ToHost();
  });
  for (int r = 0; r < kSize; ++r) {
    ASSERT_EQ(gathered[r].size(), kSize * bytes);
    for (int s = 0; s < kSize; ++s) {
      // Gather slot s: rank s's first input slot. All-to-all slot s: rank s's slot r.
      EXPECT_EQ(std::memcmp(gathered[r].data() + s * bytes, inputs[s].data(), bytes), 0);
      EXPECT_EQ(std::memcmp(exchanged[r].data() + s * bytes, inputs[s].data() + r * bytes, bytes),
                0)
          << "rank " << r << " slot " << s;
    }
    EXPECT_EQ(broadcast[r], broadcast_inputs[1]) << "rank " << r;
  }
}

TEST(NcclCommunicatorTest, PeerThatNeverJoinsGivesDeadlineExceeded) {
  FF_SKIP_WITH_FEWER_GPUS(1);
  const absl::StatusOr<std::string> id = CreateNcclUniqueId();
  ASSERT_TRUE(id.ok()) << id.status();
  const auto start = std::chrono::steady_clock::now();
  auto communicator = NcclCommunicator::Create(
      {.rank = 0, .size = 2, .unique_id = *id, .device = 0, .timeout = std::chrono::seconds(2)});
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ(communicator.status().code(), absl::StatusCode::kDeadlineExceeded)
      << communicator.status();
  EXPECT_GE(seconds, 1.9);
  EXPECT_LT(seconds, 60.0);  // bounded (generous: abort can take a while on a loaded host)
}

TEST(NcclCommunicatorTest, PeerThatSkipsACollectiveGivesDeadlineExceeded) {
  FF_SKIP_WITH_FEWER_GPUS(2);
  const uint32_t seed = FreshSeed();
  absl::Status warm_up[2], waited, after;
  std::atomic<bool> rank0_done{false};
  RunNcclRanks(
      2,
      [&](NcclCommunicator& communicator) {
        const int rank = communicator.rank();
        DeviceBuffer<float> data(RandomFloats(1024, seed + rank));
        // One complete all-reduce first, so that NCCL's connections exist and the second call
        // really reaches the GPU, where rank 0's kernel then waits for a peer that never comes.
        warm_up[rank] = communicator.AllReduceSum(data.get(), 1024);
        if (warm_up[rank].ok()) warm_up[rank] = communicator.Synchronize();
        if (rank == 1) {  // stays alive but never calls the second all-reduce
          const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(60);
          while (!rank0_done.load() && std::chrono::steady_clock::now() < give_up) {
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
          }
          return;
        }
        // The wait may end in the enqueue (if NCCL still had to connect) or in Synchronize.
        waited = communicator.AllReduceSum(data.get(), 1024);
        if (waited.ok()) waited = communicator.Synchronize();
        after = communicator.AllReduceSum(data.get(), 1024);
        rank0_done = true;
      },
      std::chrono::seconds(5));
  EXPECT_TRUE(warm_up[0].ok()) << warm_up[0];
  EXPECT_TRUE(warm_up[1].ok()) << warm_up[1];
  EXPECT_EQ(waited.code(), absl::StatusCode::kDeadlineExceeded) << waited;
  EXPECT_EQ(after.code(), absl::StatusCode::kFailedPrecondition) << after;
}

}  // namespace
}  // namespace flatfleet::collectives
