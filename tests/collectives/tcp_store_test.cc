#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "tests/collectives/collectives_test_support.h"
#include "worker/collectives/tcp_store_client.h"
#include "worker/collectives/tcp_store_server.h"

namespace flatfleet::collectives {
namespace {

using testing::ForkChild;
using testing::WaitForChild;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

TEST(TcpStoreTest, SetGetWaitInOneProcess) {
  auto server = TcpStoreServer::Start("127.0.0.1", 0);
  ASSERT_TRUE(server.ok()) << server.status();
  auto writer = TcpStoreClient::Connect("127.0.0.1", (*server)->port(), milliseconds(2000));
  auto reader = TcpStoreClient::Connect("127.0.0.1", (*server)->port(), milliseconds(2000));
  ASSERT_TRUE(writer.ok() && reader.ok());
  const std::string binary("\0\x01\xff value", 9);
  ASSERT_TRUE((*writer)->Set("a", binary).ok());
  auto value = (*reader)->Get("a", milliseconds(100));
  ASSERT_TRUE(value.ok()) << value.status();
  EXPECT_EQ(*value, binary);
  ASSERT_TRUE((*writer)->Set("a", "overwritten").ok());
  EXPECT_EQ(*(*reader)->Get("a", milliseconds(100)), "overwritten");

  // Wait returns once a later writer provides every key.
  std::thread late_writer([&] {
    std::this_thread::sleep_for(milliseconds(100));
    ASSERT_TRUE((*writer)->Set("b", "1").ok());
    ASSERT_TRUE((*writer)->Set("c", "2").ok());
  });
  EXPECT_TRUE((*reader)->Wait({"a", "b", "c"}, milliseconds(3000)).ok());
  late_writer.join();
  // The gloo Store interface sees the same data.
  EXPECT_EQ((*reader)->get("c"), std::vector<char>({'2'}));
}

TEST(TcpStoreTest, MissingKeysTimeOutWithinTheirBound) {
  auto server = TcpStoreServer::Start("127.0.0.1", 0);
  ASSERT_TRUE(server.ok());
  auto client = TcpStoreClient::Connect("127.0.0.1", (*server)->port(), milliseconds(300));
  ASSERT_TRUE(client.ok());
  const auto start = Clock::now();
  EXPECT_EQ((*client)->Get("never", milliseconds(300)).status().code(),
            absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ((*client)->Wait({"never"}, milliseconds(300)).code(),
            absl::StatusCode::kDeadlineExceeded);
  EXPECT_THROW((*client)->get("never"), std::exception);
  const auto elapsed = Clock::now() - start;
  EXPECT_GE(elapsed, milliseconds(850));
  EXPECT_LT(elapsed, milliseconds(3000));
  // The connection stays usable after a timeout.
  EXPECT_TRUE((*client)->Set("k", "v").ok());
}

TEST(TcpStoreTest, ConnectWithoutServerFailsWithinTimeout) {
  auto server = TcpStoreServer::Start("127.0.0.1", 0);
  ASSERT_TRUE(server.ok());
  const uint16_t port = (*server)->port();
  server->reset();  // nothing listens on this port any more
  const auto start = Clock::now();
  auto client = TcpStoreClient::Connect("127.0.0.1", port, milliseconds(300));
  EXPECT_EQ(client.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_LT(Clock::now() - start, milliseconds(2000));
}

TEST(TcpStoreTest, StoppingTheServerReleasesWaitingClients) {
  auto server = TcpStoreServer::Start("127.0.0.1", 0);
  ASSERT_TRUE(server.ok());
  auto client = TcpStoreClient::Connect("127.0.0.1", (*server)->port(), milliseconds(1000));
  ASSERT_TRUE(client.ok());
  std::thread stopper([&] {
    std::this_thread::sleep_for(milliseconds(100));
    (*server)->Stop();
  });
  const auto start = Clock::now();
  EXPECT_FALSE((*client)->Wait({"never"}, milliseconds(20000)).ok());
  EXPECT_LT(Clock::now() - start, milliseconds(3000));
  stopper.join();
}

TEST(TcpStoreTest, WorksAcrossProcesses) {
  auto server = TcpStoreServer::Start("127.0.0.1", 0);
  ASSERT_TRUE(server.ok());
  const uint16_t port = (*server)->port();
  constexpr int kChildren = 3;
  std::vector<pid_t> children;
  for (int child = 0; child < kChildren; ++child) {
    children.push_back(ForkChild([port, child]() -> int {
      auto client = TcpStoreClient::Connect("127.0.0.1", port, milliseconds(5000));
      if (!client.ok()) return 10;
      if (!(*client)
               ->Set("child/" + std::to_string(child), "hello " + std::to_string(child))
               .ok()) {
        return 11;
      }
      std::vector<std::string> everyone;
      for (int other = 0; other < kChildren; ++other)
        everyone.push_back("child/" + std::to_string(other));
      if (!(*client)->Wait(everyone, milliseconds(5000)).ok()) return 12;
      const int next = (child + 1) % kChildren;
      auto value = (*client)->Get("child/" + std::to_string(next), milliseconds(100));
      if (!value.ok() || *value != "hello " + std::to_string(next)) return 13;
      auto go = (*client)->Get("parent/go", milliseconds(5000));
      return go.ok() && *go == "go" ? 0 : 14;
    }));
  }
  auto parent = TcpStoreClient::Connect("127.0.0.1", port, milliseconds(5000));
  ASSERT_TRUE(parent.ok());
  ASSERT_TRUE((*parent)->Wait({"child/0", "child/1", "child/2"}, milliseconds(5000)).ok());
  ASSERT_TRUE((*parent)->Set("parent/go", "go").ok());
  const auto deadline = Clock::now() + std::chrono::seconds(15);
  for (int child = 0; child < kChildren; ++child) {
    EXPECT_EQ(WaitForChild(children[child], deadline), 0) << "child " << child;
  }
}

}  // namespace
}  // namespace flatfleet::collectives
