// The coordinator listens before it probes its workers: a worker that accepts connections but
// never answers (a stalled process) delays only the planning, in the background, never the API.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "coordinator/server/coordinator_server.h"
#include "gtest/gtest.h"
#include "tests/coordinator/coordinator_test_util.h"
#include "tests/coordinator/fake_worker.h"

namespace flatfleet::coordinator {
namespace {

using testing_util::Client;
using testing_util::CompletionLines;
using testing_util::FakeWorker;
using testing_util::FreshDatabasePath;
using testing_util::TestCoordinatorOptions;

// A TCP port whose connections the kernel accepts but nobody ever answers.
class SilentListener {
 public:
  SilentListener() : fd_(socket(AF_INET, SOCK_STREAM, 0)) {
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t length = sizeof(address);
    if (bind(fd_, reinterpret_cast<sockaddr*>(&address), length) == 0 && listen(fd_, 16) == 0 &&
        getsockname(fd_, reinterpret_cast<sockaddr*>(&address), &length) == 0) {
      port_ = ntohs(address.sin_port);
    }
  }
  ~SilentListener() { close(fd_); }
  std::string address() const { return absl::StrCat("127.0.0.1:", port_); }
  int port() const { return port_; }

 private:
  int fd_;
  int port_ = 0;
};

TEST(StartupTest, AStalledWorkerDoesNotDelayListening) {
  SilentListener stalled;
  ASSERT_GT(stalled.port(), 0);
  FakeWorker healthy({});
  CoordinatorOptions options = TestCoordinatorOptions(FreshDatabasePath("startup"), {&healthy});
  options.workers.insert(options.workers.begin(), WorkerInfo{stalled.address(), 0});
  options.worker_probe_timeout = absl::Seconds(3);
  const absl::Time start = absl::Now();
  auto server = CoordinatorServer::Start(options);
  ASSERT_TRUE(server.ok()) << server.status();
  EXPECT_LT(absl::Now() - start, absl::Seconds(1));
  // The API answers at once, while the probe still waits for the stalled worker.
  EXPECT_TRUE(absl::StrContains((*server)->NotReadyReason(), "probing workers"))
      << (*server)->NotReadyReason();
  Client client((*server)->address());
  v1::CreateBatchResponse created = client.Submit(CompletionLines(20));
  ASSERT_TRUE(created.has_batch());
  EXPECT_LT(absl::Now() - start, absl::Seconds(2));
  // Once planned, the healthy worker's group runs the batch (the stalled one never connects).
  v1::Batch done =
      client.WaitForState(created.batch().id(), v1::BATCH_STATE_COMPLETED, absl::Seconds(30));
  EXPECT_EQ(done.request_counts().completed(), 20u);
  absl::StatusOr<ClusterPlan> plan = (*server)->WaitForPlan(absl::Seconds(1));
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->groups.size(), 2u);
  EXPECT_EQ((*server)->NotReadyReason(), "");
}

}  // namespace
}  // namespace flatfleet::coordinator
