// `serve coordinator --worker-dns` end to end with real processes: workers found through
// resolution (numeric names here: a test cannot change DNS) are planned and serve a batch, and
// the coordinator waits, answering SIGTERM, while fewer than --min-workers resolve.
#include <signal.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "coordinator/server/batch_client.h"
#include "gtest/gtest.h"
#include "tests/coordinator/child_process.h"

namespace flatfleet::coordinator {
namespace {

using testing_util::ChildProcess;

constexpr absl::Duration kStartTimeout = absl::Seconds(120);

std::string ReadFile(const std::string& path) {
  std::ifstream file(path);
  std::stringstream text;
  text << file.rdbuf();
  return text.str();
}

std::unique_ptr<ChildProcess> StartWorker(const std::string& address, const std::string& log) {
  auto worker = ChildProcess::Spawn({FLATFLEET_BINARY, "serve", "worker", "--listen", address},
                                    {.log_path = log});
  EXPECT_TRUE(worker.ok()) << worker.status();
  if (!worker.ok()) return nullptr;
  EXPECT_TRUE((*worker)->WaitForLine("listening on ", kStartTimeout).ok()) << "see " << log;
  return *std::move(worker);
}

std::vector<std::string> CoordinatorArgv(const std::string& dir, int port, int min_workers) {
  return {FLATFLEET_BINARY,
          "serve",
          "coordinator",
          "--listen",
          "127.0.0.1:0",
          "--db",
          dir + "/jobs.db",
          "--model",
          "demo=builtin:demo",
          absl::StrCat("--worker-dns=127.0.0.1:", port),
          absl::StrCat("--worker-dns=127.0.0.2:", port),
          "--worker-dns-interval=1",
          absl::StrCat("--min-workers=", min_workers)};
}

TEST(WorkerDnsProcessTest, DiscoveredWorkersServeABatch) {
  const std::string dir = testing_util::MakeTempDir("worker_dns_serve");
  const std::string log = dir + "/processes.log";
  absl::StatusOr<int> port = testing_util::PickFreePort();
  ASSERT_TRUE(port.ok()) << port.status();
  std::vector<std::unique_ptr<ChildProcess>> workers;
  for (const char* host : {"127.0.0.1", "127.0.0.2"}) {
    workers.push_back(StartWorker(absl::StrCat(host, ":", *port), log));
    ASSERT_NE(workers.back(), nullptr);
  }
  auto coordinator = ChildProcess::Spawn(CoordinatorArgv(dir, *port, 2), {.log_path = log});
  ASSERT_TRUE(coordinator.ok()) << coordinator.status();
  absl::StatusOr<std::string> address = (*coordinator)->WaitForLine("listening on ", kStartTimeout);
  ASSERT_TRUE(address.ok()) << address.status() << "; see " << log;

  auto client = BatchClient::Connect(*address, absl::Seconds(60));
  ASSERT_TRUE(client.ok()) << client.status();
  std::vector<std::string> lines;
  for (int i = 0; i < 8; ++i) {
    lines.push_back(absl::StrCat(R"({"custom_id": "r)", i, R"(", "body": {"prompt": "p)", i,
                                 R"(", "max_tokens": 4}})"));
  }
  v1::BatchOptions options;
  options.set_model("demo");
  absl::StatusOr<v1::CreateBatchResponse> created = (*client)->Submit(options, lines);
  ASSERT_TRUE(created.ok()) << created.status();
  v1::Batch batch;
  const absl::Time deadline = absl::Now() + absl::Seconds(120);
  while (absl::Now() < deadline) {
    absl::StatusOr<v1::Batch> got = (*client)->Get(created->batch().id());
    ASSERT_TRUE(got.ok()) << got.status();
    batch = *got;
    if (batch.state() != v1::BATCH_STATE_IN_PROGRESS) break;
    absl::SleepFor(absl::Milliseconds(50));
  }
  EXPECT_EQ(batch.state(), v1::BATCH_STATE_COMPLETED) << batch.ShortDebugString();
  EXPECT_EQ(batch.request_counts().completed(), lines.size());
  absl::StatusOr<int> exit_code = (*coordinator)->SignalAndWait(SIGTERM, absl::Seconds(30));
  ASSERT_TRUE(exit_code.ok()) << exit_code.status();
  EXPECT_EQ(*exit_code, 0);
  EXPECT_NE(ReadFile(log).find("model demo, 2 worker(s), tp=1, 2 group(s)"), std::string::npos)
      << "see " << log;
}

TEST(WorkerDnsProcessTest, WaitsForMinWorkersAndStopsOnSigterm) {
  const std::string dir = testing_util::MakeTempDir("worker_dns_wait");
  const std::string log = dir + "/processes.log";
  absl::StatusOr<int> port = testing_util::PickFreePort();
  ASSERT_TRUE(port.ok()) << port.status();
  // Two addresses resolve, three are required: no plan, no API, until stopped.
  auto coordinator = ChildProcess::Spawn(CoordinatorArgv(dir, *port, 3), {.log_path = log});
  ASSERT_TRUE(coordinator.ok()) << coordinator.status();
  const std::string expected = "waiting for workers: found 2 of --min-workers 3 workers";
  const absl::Time deadline = absl::Now() + absl::Seconds(60);
  while (ReadFile(log).find(expected) == std::string::npos && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(50));
  }
  EXPECT_NE(ReadFile(log).find(expected), std::string::npos) << "see " << log;
  absl::StatusOr<int> exit_code = (*coordinator)->SignalAndWait(SIGTERM, absl::Seconds(30));
  ASSERT_TRUE(exit_code.ok()) << exit_code.status();
  EXPECT_EQ(*exit_code, 0);
  EXPECT_EQ(ReadFile(log).find("listening on"), std::string::npos);
}

}  // namespace
}  // namespace flatfleet::coordinator
