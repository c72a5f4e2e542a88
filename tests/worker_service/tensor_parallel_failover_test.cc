// A coordinator over two TP=2 groups of real in-process workers: stopping one rank mid-job fails
// its group cleanly, the group's in-flight requests are re-dispatched, and the job completes on
// the other group with every request answered exactly once.
#include <filesystem>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "coordinator/server/batch_client.h"
#include "coordinator/server/coordinator_server.h"
#include "gtest/gtest.h"
#include "worker/serving/continuous_batcher_factory.h"
#include "worker/serving/model_loader.h"
#include "worker/serving/worker_process.h"

namespace flatfleet {
namespace {

std::unique_ptr<engine::WorkerProcess> StartWorker() {
  engine::WorkerProcessOptions options;
  options.metrics_listen_address.clear();  // civetweb takes seconds to stop
  options.service.model_loader = engine::CpuModelLoader();
  options.service.engine_factory = engine::ContinuousBatcherFactory();
  options.service.poll_interval = absl::Milliseconds(10);
  options.service.group_heartbeat_interval = absl::Milliseconds(200);
  auto process = engine::WorkerProcess::Start(std::move(options));
  EXPECT_TRUE(process.ok()) << process.status();
  return process.ok() ? *std::move(process) : nullptr;
}

std::string FreshDatabasePath() {
  const std::filesystem::path dir = std::filesystem::path(::testing::TempDir()) / "tp_failover";
  std::filesystem::create_directories(dir);
  const std::filesystem::path path = dir / absl::StrCat("jobs_", getpid(), ".db");
  for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(path.string() + suffix);
  return path.string();
}

v1::WorkerState StateOf(const std::string& address, std::string* message) {
  auto stub =
      v1::WorkerService::NewStub(grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  v1::HealthResponse health;
  if (!stub->Health(&context, v1::HealthRequest(), &health).ok())
    return v1::WORKER_STATE_UNSPECIFIED;
  *message = health.message();
  return health.state();
}

TEST(TensorParallelFailoverTest, StoppedRankFailsItsGroupAndTheJobCompletesElsewhereOnce) {
  std::vector<std::unique_ptr<engine::WorkerProcess>> workers;
  for (int i = 0; i < 4; ++i) {
    workers.push_back(StartWorker());
    ASSERT_NE(workers.back(), nullptr);
  }
  coordinator::CoordinatorOptions options;
  options.listen_address = "127.0.0.1:0";
  options.db_path = FreshDatabasePath();
  options.model = coordinator::ModelSpec{"demo", std::string(coordinator::kBuiltinDemoModel)};
  for (auto& worker : workers) options.workers.push_back({worker->address(), 0});
  options.planner.forced_tp = 2;
  options.scheduler.in_flight_window = 8;
  options.scheduler.poll_interval = absl::Milliseconds(10);
  options.scheduler.reconnect_backoff_max = absl::Milliseconds(200);
  options.scheduler.group_timeout = absl::Seconds(20);
  auto server = coordinator::CoordinatorServer::Start(std::move(options));
  ASSERT_TRUE(server.ok()) << server.status();
  absl::StatusOr<coordinator::ClusterPlan> plan = (*server)->WaitForPlan();
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_EQ(plan->groups.size(), 2u);
  ASSERT_EQ(plan->tp_size, 2u);

  constexpr int kRequests = 24;
  std::vector<std::string> lines;
  for (int i = 0; i < kRequests; ++i) {
    lines.push_back(absl::StrCat(R"({"custom_id": "r)", i, R"(", "body": {"prompt": "story )", i,
                                 R"(", "max_tokens": 48, "temperature": 0}})"));
  }
  auto client = coordinator::BatchClient::Connect((*server)->address());
  ASSERT_TRUE(client.ok()) << client.status();
  v1::BatchOptions batch_options;
  batch_options.set_model("demo");
  auto created = (*client)->Submit(batch_options, lines);
  ASSERT_TRUE(created.ok()) << created.status();
  ASSERT_TRUE(created->has_batch());
  const std::string batch_id = created->batch().id();

  // Once group-0 (workers 0 and 1) has answered something, stop its follower mid-job.
  const absl::Time deadline = absl::Now() + absl::Seconds(240);
  auto progress = [&] {
    auto batch = (*client)->Get(batch_id);
    EXPECT_TRUE(batch.ok()) << batch.status();
    return batch.ok() ? *batch : v1::Batch();
  };
  while (progress().request_counts().completed() < 2 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  const std::string leader_address = workers[0]->address();
  workers[1].reset();

  v1::Batch batch;
  do {
    absl::SleepFor(absl::Milliseconds(50));
    batch = progress();
  } while (batch.state() != v1::BATCH_STATE_COMPLETED && absl::Now() < deadline);
  ASSERT_EQ(batch.state(), v1::BATCH_STATE_COMPLETED);
  EXPECT_EQ(batch.request_counts().completed(), static_cast<uint64_t>(kRequests));
  EXPECT_EQ(batch.request_counts().failed(), 0u);

  std::string message;
  EXPECT_EQ(StateOf(leader_address, &message), v1::WORKER_STATE_FAILED) << message;
  EXPECT_NE(message.find("lost a peer"), std::string::npos) << message;
  std::printf("[ failover ] group-0 rank 0: %s\n", message.c_str());

  // Exactly once: one successful result per custom_id.
  std::multiset<std::string> answered;
  absl::Status streamed =
      (*client)->StreamResults(batch_id, 0, false, [&](const v1::BatchResult& result) {
        EXPECT_TRUE(result.has_response()) << result.error().message();
        answered.insert(result.custom_id());
        return true;
      });
  ASSERT_TRUE(streamed.ok()) << streamed;
  EXPECT_EQ(answered.size(), static_cast<size_t>(kRequests));
  for (int i = 0; i < kRequests; ++i) EXPECT_EQ(answered.count(absl::StrCat("r", i)), 1u) << i;

  // The lost group held work (8 slots, 48 tokens a request) that went back to the queue.
  const std::string page = (*server)->metrics().Expose();
  const std::string requeued =
      R"(flatfleet_coordinator_requests_total{model="demo",outcome="requeued"} )";
  const size_t at = page.find(requeued);
  ASSERT_NE(at, std::string::npos) << page;
  const double requeued_count = std::stod(page.substr(at + requeued.size()));
  std::printf("[ failover ] %.0f requests re-dispatched\n", requeued_count);
  EXPECT_GT(requeued_count, 0);
  (*server)->Shutdown();
}

}  // namespace
}  // namespace flatfleet
