// A follower whose rank 0 dies without a stop message (a killed process: the child exits with no
// destructors, the kernel closes its sockets) reports the lost leader promptly instead of
// waiting forever; a leader's heartbeats before that keep it alive.
#include "worker/serving/tensor_parallel_follower.h"

#include <chrono>
#include <memory>
#include <string>

#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"
#include "kernels/cpu/cpu_backend.h"
#include "tests/collectives/collectives_test_support.h"
#include "worker/batching/group_message.h"
#include "worker/collectives/gloo_communicator.h"
#include "worker/collectives/tcp_store_client.h"
#include "worker/collectives/tcp_store_server.h"
#include "worker/model/demo_model.h"

namespace flatfleet::engine {
namespace {

using Clock = std::chrono::steady_clock;

std::unique_ptr<collectives::GlooCommunicator> Connect(uint16_t port, int rank) {
  const std::chrono::milliseconds timeout(20000);
  auto store = collectives::TcpStoreClient::Connect("127.0.0.1", port, timeout);
  if (!store.ok()) return nullptr;
  collectives::GlooCommunicatorOptions options;
  options.rank = rank;
  options.size = 2;
  options.timeout = timeout;
  options.store_prefix = "follower-test";
  auto communicator = collectives::GlooCommunicator::Create(options, **store);
  return communicator.ok() ? *std::move(communicator) : nullptr;
}

TEST(TensorParallelFollowerTest, KilledLeaderEndsTheFollowerWithAnError) {
  auto server = collectives::TcpStoreServer::Start("127.0.0.1", 0);
  ASSERT_TRUE(server.ok()) << server.status();
  const uint16_t port = (*server)->port();
  // Rank 0 in a child process: two heartbeats, then it dies.
  const pid_t leader = collectives::testing::ForkChild([port]() -> int {
    auto communicator = Connect(port, 0);
    if (communicator == nullptr) return 10;
    for (int i = 0; i < 2; ++i) {
      std::string heartbeat = EncodeGroupMessage({GroupMessageKind::kHeartbeat, {}});
      if (!collectives::BroadcastMessage(*communicator, heartbeat, 0).ok()) return 11;
    }
    return 0;
  });

  auto communicator = Connect(port, 1);
  ASSERT_NE(communicator, nullptr);
  // The follower only replays plans; this leader sends none, so any model does.
  auto model = MakeDemoModel(kernels::cpu::DefaultCpuBackend());
  ASSERT_TRUE(model.ok()) << model.status();
  auto cache =
      PagedKvCache::Create({(*model)->config().num_hidden_layers, (*model)->kv_row_size(), 16}, 8);
  ASSERT_TRUE(cache.ok()) << cache.status();
  absl::Notification ended;
  absl::Status end_status;
  const Clock::time_point started = Clock::now();
  {
    TensorParallelFollower follower(**model, *communicator, *std::move(cache), nullptr,
                                    [&](const absl::Status& status) {
                                      end_status = status;
                                      ended.Notify();
                                    });
    // Well under the 20 s collective timeout: the closed connection is noticed at once.
    EXPECT_TRUE(ended.WaitForNotificationWithTimeout(absl::Seconds(15)));
  }
  const double seconds = std::chrono::duration<double>(Clock::now() - started).count();
  EXPECT_EQ(collectives::testing::WaitForChild(leader, Clock::now() + std::chrono::seconds(30)), 0);
  EXPECT_FALSE(end_status.ok());
  EXPECT_NE(end_status.message().find("rank 1 lost rank 0"), std::string::npos) << end_status;
  std::printf("[ follower ] ended after %.2f s: %s\n", seconds, end_status.ToString().c_str());
}

}  // namespace
}  // namespace flatfleet::engine
