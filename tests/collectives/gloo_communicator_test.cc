#include "worker/collectives/gloo_communicator.h"

#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "tests/collectives/collectives_test_support.h"
#include "worker/collectives/tcp_store_client.h"
#include "worker/collectives/tcp_store_server.h"

namespace flatfleet::collectives {
namespace {

using testing::ForkChild;
using testing::FreshSeed;
using testing::RandomActivations;
using testing::RunRanksAsThreads;
using testing::WaitForChild;
using Clock = std::chrono::steady_clock;

constexpr int64_t kFourMiBOfFloats = 1 << 20;

std::vector<std::vector<float>> RandomPerRank(int size, int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<std::vector<float>> inputs;
  for (int r = 0; r < size; ++r) inputs.push_back(RandomActivations(n, rng));
  return inputs;
}

template <typename T>
absl::Span<const std::byte> Bytes(const std::vector<T>& v) {
  return absl::MakeConstSpan(reinterpret_cast<const std::byte*>(v.data()), v.size() * sizeof(T));
}
template <typename T>
absl::Span<std::byte> MutableBytes(std::vector<T>& v) {
  return absl::MakeSpan(reinterpret_cast<std::byte*>(v.data()), v.size() * sizeof(T));
}

TEST(GlooCommunicatorTest, AllReduceSumMatchesSerialSum) {
  const uint32_t seed = FreshSeed();
  for (int size : {1, 2, 3, 4}) {
    for (int64_t n : {int64_t{1}, int64_t{7}, int64_t{1000}, kFourMiBOfFloats + 3}) {
      const auto inputs = RandomPerRank(size, n, seed + size);
      std::vector<double> expected(n, 0.0), magnitude(n, 0.0);
      for (const auto& input : inputs) {
        for (int64_t i = 0; i < n; ++i) {
          expected[i] += input[i];
          magnitude[i] += std::fabs(input[i]);
        }
      }
      std::vector<std::vector<float>> results(size);
      RunRanksAsThreads(size, [&](Communicator& communicator) {
        EXPECT_EQ(communicator.size(), size);
        std::vector<float> data = inputs[communicator.rank()];
        ASSERT_TRUE(communicator.AllReduceSum(absl::MakeSpan(data)).ok());
        results[communicator.rank()] = std::move(data);
      });
      for (int r = 0; r < size; ++r) {
        ASSERT_EQ(results[r].size(), n);
        ASSERT_EQ(std::memcmp(results[r].data(), results[0].data(), n * sizeof(float)), 0)
            << "ranks disagree";
        for (int64_t i = 0; i < n; ++i) {
          ASSERT_NEAR(results[r][i], expected[i], 4 * size * 1.2e-7 * magnitude[i] + 1e-30)
              << "size=" << size << " n=" << n << " i=" << i;
        }
      }
    }
  }
}

TEST(GlooCommunicatorTest, AllGatherPlacesEachRankAtItsSlot) {
  const uint32_t seed = FreshSeed();
  for (int size : {1, 2, 3, 4}) {
    for (int64_t n : {int64_t{1}, int64_t{333}, kFourMiBOfFloats / size}) {
      const auto inputs = RandomPerRank(size, n, seed + size);
      RunRanksAsThreads(size, [&](Communicator& communicator) {
        std::vector<float> gathered(n * size);
        ASSERT_TRUE(
            communicator.AllGather(Bytes(inputs[communicator.rank()]), MutableBytes(gathered))
                .ok());
        for (int r = 0; r < size; ++r) {
          ASSERT_EQ(std::memcmp(gathered.data() + r * n, inputs[r].data(), n * sizeof(float)), 0)
              << "slot " << r << " on rank " << communicator.rank();
        }
      });
    }
  }
}

TEST(GlooCommunicatorTest, AllToAllRoutesSlotsToTheirOwners) {
  std::mt19937 rng(FreshSeed());
  for (int size : {1, 2, 3, 4}) {
    const int64_t slot = 1 + rng() % 5000;
    // sent[s][d]: what rank s sends to rank d.
    std::vector<std::vector<std::vector<uint8_t>>> sent(size,
                                                        std::vector<std::vector<uint8_t>>(size));
    for (auto& row : sent) {
      for (auto& bytes : row) {
        bytes.resize(slot);
        for (auto& b : bytes) b = static_cast<uint8_t>(rng());
      }
    }
    RunRanksAsThreads(size, [&](Communicator& communicator) {
      const int rank = communicator.rank();
      std::vector<uint8_t> input;
      for (int d = 0; d < size; ++d)
        input.insert(input.end(), sent[rank][d].begin(), sent[rank][d].end());
      std::vector<uint8_t> output(input.size());
      ASSERT_TRUE(communicator.AllToAll(Bytes(input), MutableBytes(output)).ok());
      for (int s = 0; s < size; ++s) {
        ASSERT_EQ(std::memcmp(output.data() + s * slot, sent[s][rank].data(), slot), 0)
            << "from " << s << " to " << rank;
      }
    });
  }
}

TEST(GlooCommunicatorTest, BroadcastFromEveryRoot) {
  const uint32_t seed = FreshSeed();
  for (int size : {1, 2, 3, 4}) {
    const auto inputs = RandomPerRank(size, 4099, seed + size);
    RunRanksAsThreads(size, [&](Communicator& communicator) {
      for (int root = 0; root < size; ++root) {
        std::vector<float> data = inputs[communicator.rank()];
        ASSERT_TRUE(communicator.Broadcast(MutableBytes(data), root).ok());
        ASSERT_EQ(data, inputs[root]) << "root " << root;
      }
      // A step plan whose length only rank 0 knows.
      std::string plan = communicator.rank() == 0 ? std::string(12345, 'p') + "end" : "stale";
      ASSERT_TRUE(BroadcastMessage(communicator, plan, 0).ok());
      EXPECT_EQ(plan, std::string(12345, 'p') + "end");
      EXPECT_EQ(communicator.Broadcast({}, size).code(), absl::StatusCode::kInvalidArgument);
    });
  }
}

TEST(GlooCommunicatorTest, BarrierWaitsForEveryRank) {
  for (int size : {2, 3, 4}) {
    std::atomic<int> arrived = 0;
    RunRanksAsThreads(size, [&](Communicator& communicator) {
      std::this_thread::sleep_for(std::chrono::milliseconds(40 * communicator.rank()));
      arrived++;
      ASSERT_TRUE(communicator.Barrier().ok());
      EXPECT_EQ(arrived.load(), size);
    });
  }
}

TEST(GlooCommunicatorTest, RejectsMismatchedBuffers) {
  RunRanksAsThreads(2, [&](Communicator& communicator) {
    std::vector<std::byte> input(10), output(15);
    EXPECT_EQ(communicator.AllGather(input, absl::MakeSpan(output)).code(),
              absl::StatusCode::kInvalidArgument);
    std::vector<std::byte> odd(7), odd_out(7);
    EXPECT_EQ(communicator.AllToAll(odd, absl::MakeSpan(odd_out)).code(),
              absl::StatusCode::kInvalidArgument);
    EXPECT_TRUE(communicator.Barrier().ok());  // still usable: nothing was sent
  });
}

TEST(GlooCommunicatorTest, SilentPeerBecomesDeadlineExceeded) {
  const auto timeout = std::chrono::milliseconds(1000);
  std::atomic<bool> rank0_done = false;
  RunRanksAsThreads(
      2,
      [&](Communicator& communicator) {
        if (communicator.rank() == 1) {  // alive but never joins the all-reduce
          const auto give_up = Clock::now() + std::chrono::seconds(10);
          while (!rank0_done && Clock::now() < give_up)
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
          return;
        }
        std::vector<float> data = {1.0f, 2.0f};
        const auto start = Clock::now();
        const absl::Status status = communicator.AllReduceSum(absl::MakeSpan(data));
        const auto elapsed = Clock::now() - start;
        rank0_done = true;
        EXPECT_EQ(status.code(), absl::StatusCode::kDeadlineExceeded) << status;
        EXPECT_GE(elapsed, timeout * 9 / 10);
        EXPECT_LT(elapsed, timeout * 3);
        EXPECT_EQ(communicator.Barrier().code(), absl::StatusCode::kFailedPrecondition);
      },
      timeout);
}

TEST(GlooCommunicatorTest, RendezvousWithoutPeersFailsWithinTimeout) {
  auto server = TcpStoreServer::Start("127.0.0.1", 0);
  ASSERT_TRUE(server.ok()) << server.status();
  const auto timeout = std::chrono::milliseconds(800);
  auto store = TcpStoreClient::Connect("127.0.0.1", (*server)->port(), timeout);
  ASSERT_TRUE(store.ok());
  GlooCommunicatorOptions options;
  options.rank = 0;
  options.size = 2;  // rank 1 never comes
  options.timeout = timeout;
  const auto start = Clock::now();
  auto communicator = GlooCommunicator::Create(options, **store);
  EXPECT_EQ(communicator.status().code(), absl::StatusCode::kDeadlineExceeded)
      << communicator.status();
  EXPECT_LT(Clock::now() - start, timeout + std::chrono::seconds(3));
  std::printf("[ status   ] %s\n", communicator.status().ToString().c_str());
}

// Ranks as processes rendezvousing through the TCP store, as workers do.
std::unique_ptr<GlooCommunicator> ConnectChild(uint16_t port, int rank, int size,
                                               std::chrono::milliseconds timeout,
                                               const std::string& prefix) {
  auto store = TcpStoreClient::Connect("127.0.0.1", port, timeout);
  if (!store.ok()) return nullptr;
  GlooCommunicatorOptions options;
  options.rank = rank;
  options.size = size;
  options.timeout = timeout;
  options.store_prefix = prefix;
  auto communicator = GlooCommunicator::Create(options, **store);
  return communicator.ok() ? std::move(*communicator) : nullptr;
}

TEST(GlooCommunicatorTest, ForkedProcessesAllReduce) {
  const uint32_t seed = FreshSeed();
  constexpr int kSize = 3;
  constexpr int64_t n = 100003;
  const auto inputs = RandomPerRank(kSize, n, seed);
  auto server = TcpStoreServer::Start("127.0.0.1", 0);
  ASSERT_TRUE(server.ok()) << server.status();
  const uint16_t port = (*server)->port();
  std::vector<pid_t> children;
  for (int rank = 0; rank < kSize; ++rank) {
    children.push_back(ForkChild([&, rank]() -> int {
      auto communicator = ConnectChild(port, rank, kSize, std::chrono::seconds(10), "forked");
      if (communicator == nullptr) return 10;
      std::vector<float> data = inputs[rank];
      if (!communicator->AllReduceSum(absl::MakeSpan(data)).ok()) return 11;
      for (int64_t i = 0; i < n; ++i) {
        const double expected = double{inputs[0][i]} + inputs[1][i] + inputs[2][i];
        const double magnitude =
            std::fabs(inputs[0][i]) + std::fabs(inputs[1][i]) + std::fabs(inputs[2][i]);
        if (std::fabs(data[i] - expected) > 1e-6 * magnitude) return 12;
      }
      return communicator->Barrier().ok() ? 0 : 13;
    }));
  }
  const auto deadline = Clock::now() + std::chrono::seconds(30);
  for (int rank = 0; rank < kSize; ++rank) {
    EXPECT_EQ(WaitForChild(children[rank], deadline), 0) << "rank " << rank;
  }
}

TEST(GlooCommunicatorTest, KilledPeerProcessSurfacesAsErrorWithinTimeout) {
  constexpr int kSize = 3;
  constexpr int kVictim = 2;
  const auto timeout = std::chrono::milliseconds(4000);
  auto server = TcpStoreServer::Start("127.0.0.1", 0);
  ASSERT_TRUE(server.ok()) << server.status();
  const uint16_t port = (*server)->port();
  int ready_pipe[2];
  ASSERT_EQ(pipe(ready_pipe), 0);
  std::vector<pid_t> children;
  for (int rank = 0; rank < kSize; ++rank) {
    children.push_back(ForkChild([&, rank]() -> int {
      auto communicator = ConnectChild(port, rank, kSize, timeout, "victim");
      if (communicator == nullptr) return 10;
      std::vector<float> data(50000, 1.0f + rank);
      if (!communicator->AllReduceSum(absl::MakeSpan(data)).ok()) return 11;
      if (rank == kVictim) {  // tell the parent we are connected, then wait to be killed
        const char ready = 'r';
        if (write(ready_pipe[1], &ready, 1) != 1) return 14;
        sleep(20);
        return 15;
      }
      // Blocks on the victim, which dies meanwhile.
      const auto start = Clock::now();
      const absl::Status status = communicator->AllReduceSum(absl::MakeSpan(data));
      const auto elapsed = Clock::now() - start;
      std::printf("[ rank %d   ] after %.2f s: %s\n", rank,
                  std::chrono::duration<double>(elapsed).count(), status.ToString().c_str());
      std::fflush(stdout);  // the child leaves through _exit
      if (status.ok()) return 1;
      if (status.code() != absl::StatusCode::kUnavailable &&
          status.code() != absl::StatusCode::kDeadlineExceeded) {
        return 2;
      }
      return elapsed <= timeout + std::chrono::seconds(1) ? 0 : 3;
    }));
  }
  close(ready_pipe[1]);
  pollfd ready_poll{ready_pipe[0], POLLIN, 0};
  ASSERT_EQ(poll(&ready_poll, 1, 15000), 1) << "the victim never connected";
  char ready = 0;
  ASSERT_EQ(read(ready_pipe[0], &ready, 1), 1);  // EOF if every child died early
  close(ready_pipe[0]);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // let the others block on it
  kill(children[kVictim], SIGKILL);
  const auto deadline = Clock::now() + timeout + std::chrono::seconds(10);
  EXPECT_EQ(WaitForChild(children[kVictim], deadline), -1);
  for (int rank = 0; rank < kSize; ++rank) {
    if (rank != kVictim) {
      EXPECT_EQ(WaitForChild(children[rank], deadline), 0) << "rank " << rank;
    }
  }
}

}  // namespace
}  // namespace flatfleet::collectives
