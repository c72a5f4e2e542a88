// Crash recovery with real processes of the `flatfleet` binary (workers serving the built-in
// demo model, and the coordinator with its SQLite file): a worker killed with SIGKILL mid-job,
// and the coordinator killed with SIGKILL mid-job and restarted on the same database. Either
// way the job completes with every request answered exactly once.
#include <signal.h>

#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "coordinator/server/batch_client.h"
#include "gtest/gtest.h"
#include "tests/coordinator/child_process.h"

namespace flatfleet::coordinator {
namespace {

using testing_util::ChildProcess;
using testing_util::HttpGet;
using testing_util::MakeTempDir;

constexpr absl::Duration kStartTimeout = absl::Seconds(120);
constexpr absl::Duration kJobTimeout = absl::Seconds(400);

// Lines with fresh prompts and seeds each run (custom_ids r0..).
std::vector<std::string> RandomLines(int count) {
  std::vector<std::string> lines;
  const uint64_t salt = ::testing::UnitTest::GetInstance()->random_seed();
  for (int i = 0; i < count; ++i) {
    lines.push_back(absl::StrCat(R"({"custom_id": "r)", i, R"(", "body": {"prompt": "Tale )", salt,
                                 " ", i, R"(:", "max_tokens": 12, "seed": )", salt + i, "}}"));
  }
  return lines;
}

// "HOST:PORT" -> PORT.
int PortOf(const std::string& address) { return std::stoi(address.substr(address.rfind(':') + 1)); }

// The value of the exposition line that starts with `series` (e.g. a counter with its labels)
// on 127.0.0.1:`port`/metrics; 0 when absent or unreachable.
double ScrapeValue(int port, const std::string& series) {
  absl::StatusOr<std::string> body = HttpGet(port, "/metrics", absl::Seconds(10));
  if (!body.ok()) return 0;
  for (absl::string_view line : absl::StrSplit(*body, '\n')) {
    if (absl::StartsWith(line, series + " ")) {
      double value = 0;
      if (absl::SimpleAtod(line.substr(series.size() + 1), &value)) return value;
    }
  }
  return 0;
}

class Deployment {
 public:
  explicit Deployment(const std::string& name) : dir_(MakeTempDir(name)) {}

  const std::string& dir() const { return dir_; }
  std::string log() const { return dir_ + "/processes.log"; }

  // A worker on a port of its own choosing; returns its address. Its /metrics port goes to
  // `metrics_port`.
  std::string StartWorker(int* metrics_port = nullptr) {
    auto worker = ChildProcess::Spawn({FLATFLEET_BINARY, "serve", "worker", "--listen",
                                       "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"},
                                      {.log_path = log()});
    EXPECT_TRUE(worker.ok()) << worker.status();
    if (!worker.ok()) return "";
    auto address = (*worker)->WaitForLine("listening on ", kStartTimeout);
    EXPECT_TRUE(address.ok()) << address.status() << "; see " << log();
    auto metrics = (*worker)->WaitForLine("metrics on ", kStartTimeout);
    EXPECT_TRUE(metrics.ok()) << metrics.status();
    if (metrics_port != nullptr && metrics.ok()) *metrics_port = PortOf(*metrics);
    workers_.push_back(*std::move(worker));
    return address.value_or("");
  }

  // (Re)starts the coordinator on the deployment's database; returns its address.
  std::string StartCoordinator(const std::vector<std::string>& workers) {
    std::vector<std::string> argv = {FLATFLEET_BINARY,     "serve",       "coordinator",
                                     "--listen",           "127.0.0.1:0", "--db",
                                     dir_ + "/jobs.db",    "--model",     "demo=builtin:demo",
                                     "--in-flight-window", "2",           "--metrics-listen",
                                     "127.0.0.1:0"};
    for (const std::string& worker : workers) {
      argv.push_back("--worker");
      argv.push_back(worker);
    }
    auto coordinator = ChildProcess::Spawn(argv, {.log_path = log()});
    EXPECT_TRUE(coordinator.ok()) << coordinator.status();
    if (!coordinator.ok()) return "";
    auto address = (*coordinator)->WaitForLine("listening on ", kStartTimeout);
    EXPECT_TRUE(address.ok()) << address.status() << "; see " << log();
    auto metrics = (*coordinator)->WaitForLine("metrics on ", kStartTimeout);
    EXPECT_TRUE(metrics.ok()) << metrics.status();
    if (metrics.ok()) coordinator_metrics_port_ = PortOf(*metrics);
    coordinator_ = *std::move(coordinator);
    return address.value_or("");
  }

  int coordinator_metrics_port() const { return coordinator_metrics_port_; }

  ChildProcess& worker(size_t i) { return *workers_[i]; }
  ChildProcess& coordinator() { return *coordinator_; }

 private:
  std::string dir_;
  std::vector<std::unique_ptr<ChildProcess>> workers_;
  std::unique_ptr<ChildProcess> coordinator_;
  int coordinator_metrics_port_ = 0;
};

std::unique_ptr<BatchClient> Connect(const std::string& address) {
  auto client = BatchClient::Connect(address, absl::Seconds(60));
  EXPECT_TRUE(client.ok()) << client.status();
  return client.ok() ? *std::move(client) : nullptr;
}

std::string SubmitOrDie(BatchClient& client, const std::vector<std::string>& lines) {
  v1::BatchOptions options;
  options.set_model("demo");
  absl::StatusOr<v1::CreateBatchResponse> created = client.Submit(options, lines);
  EXPECT_TRUE(created.ok()) << created.status();
  if (!created.ok()) return "";
  EXPECT_EQ(created->errors_size(), 0);
  return created->batch().id();
}

// Polls until at least `answered` requests have results (or the batch ended).
v1::Batch WaitForProgress(BatchClient& client, const std::string& id, uint64_t answered) {
  const absl::Time deadline = absl::Now() + kJobTimeout;
  v1::Batch batch;
  while (absl::Now() < deadline) {
    absl::StatusOr<v1::Batch> got = client.Get(id);
    if (got.ok()) {
      batch = *got;
      const uint64_t done = batch.request_counts().completed() + batch.request_counts().failed();
      if (done >= answered || batch.state() != v1::BATCH_STATE_IN_PROGRESS) return batch;
    }
    absl::SleepFor(absl::Milliseconds(50));
  }
  ADD_FAILURE() << "batch " << id << " made no progress: " << batch.ShortDebugString();
  return batch;
}

// Follows the results stream until the batch ends, resuming when the stream breaks.
std::vector<v1::BatchResult> FollowResults(BatchClient& client, const std::string& id) {
  std::vector<v1::BatchResult> results;
  const absl::Time deadline = absl::Now() + kJobTimeout;
  while (absl::Now() < deadline) {
    absl::Status status =
        client.StreamResults(id, results.size(), /*follow=*/true, [&](const v1::BatchResult& r) {
          EXPECT_EQ(r.sequence(), results.size());
          results.push_back(r);
          return true;
        });
    if (status.ok()) return results;
    absl::SleepFor(absl::Milliseconds(200));
  }
  ADD_FAILURE() << "results of " << id << " did not end in time";
  return results;
}

// Each of r0..r{count-1} has exactly one result, a response.
void ExpectEachAnsweredOnce(const std::vector<v1::BatchResult>& results, int count) {
  std::map<std::string, int> seen;
  for (const v1::BatchResult& result : results) {
    ++seen[result.custom_id()];
    EXPECT_TRUE(result.has_response()) << result.ShortDebugString();
  }
  EXPECT_EQ(results.size(), static_cast<size_t>(count));
  for (int i = 0; i < count; ++i) EXPECT_EQ(seen[absl::StrCat("r", i)], 1) << "r" << i;
}

TEST(ProcessCrashTest, WorkerKilledMidJobLeavesEveryRequestAnsweredOnce) {
  Deployment deployment("worker_kill");
  int victim_metrics = 0;
  const std::string first = deployment.StartWorker(&victim_metrics);
  const std::string second = deployment.StartWorker();
  ASSERT_FALSE(first.empty());
  ASSERT_FALSE(second.empty());
  const std::string address = deployment.StartCoordinator({first, second});
  ASSERT_FALSE(address.empty());
  auto client = Connect(address);
  ASSERT_NE(client, nullptr);

  constexpr int kRequests = 120;
  const std::string id = SubmitOrDie(*client, RandomLines(kRequests));
  ASSERT_FALSE(id.empty());
  // Kill the first worker once it is surely serving the job: it has answered some requests
  // and, with work pending, holds a full in-flight window.
  const std::string completed = R"(flatfleet_worker_requests_total{outcome="completed"})";
  const absl::Time deadline = absl::Now() + kJobTimeout;
  while (ScrapeValue(victim_metrics, completed) < 2 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  ASSERT_GE(ScrapeValue(victim_metrics, completed), 2) << "see " << deployment.log();
  absl::StatusOr<v1::Batch> before_kill = client->Get(id);
  ASSERT_TRUE(before_kill.ok()) << before_kill.status();
  ASSERT_EQ(before_kill->state(), v1::BATCH_STATE_IN_PROGRESS) << "finished before the kill";
  absl::StatusOr<int> killed = deployment.worker(0).SignalAndWait(SIGKILL, absl::Seconds(30));
  ASSERT_TRUE(killed.ok()) << killed.status();

  const std::vector<v1::BatchResult> results = FollowResults(*client, id);
  absl::StatusOr<v1::Batch> done = client->Get(id);
  ASSERT_TRUE(done.ok()) << done.status();
  EXPECT_EQ(done->state(), v1::BATCH_STATE_COMPLETED) << "see " << deployment.log();
  EXPECT_EQ(done->request_counts().completed(), static_cast<uint64_t>(kRequests));
  EXPECT_EQ(done->request_counts().failed(), 0u);
  ExpectEachAnsweredOnce(results, kRequests);
  // The killed worker's in-flight requests went back to pending and ran on the other one.
  EXPECT_GT(ScrapeValue(deployment.coordinator_metrics_port(),
                        R"(flatfleet_coordinator_requests_total{model="demo",outcome="requeued"})"),
            0)
      << "see " << deployment.log();
}

TEST(ProcessCrashTest, CoordinatorKilledMidJobResumesOnItsDatabase) {
  Deployment deployment("coordinator_kill");
  int worker_metrics = 0;
  const std::string worker = deployment.StartWorker(&worker_metrics);
  ASSERT_FALSE(worker.empty());
  std::string address = deployment.StartCoordinator({worker});
  ASSERT_FALSE(address.empty());
  constexpr int kRequests = 120;
  std::string id;
  std::vector<v1::BatchResult> before;
  {
    auto client = Connect(address);
    ASSERT_NE(client, nullptr);
    id = SubmitOrDie(*client, RandomLines(kRequests));
    ASSERT_FALSE(id.empty());
    const v1::Batch progress = WaitForProgress(*client, id, 5);
    ASSERT_EQ(progress.state(), v1::BATCH_STATE_IN_PROGRESS) << "finished before the kill";
    ASSERT_TRUE(client
                    ->StreamResults(id, 0, /*follow=*/false,
                                    [&](const v1::BatchResult& r) {
                                      before.push_back(r);
                                      return true;
                                    })
                    .ok());
  }
  ASSERT_GE(before.size(), 5u);
  ASSERT_LT(before.size(), static_cast<size_t>(kRequests));
  const std::string completed = R"(flatfleet_worker_requests_total{outcome="completed"})";
  const double answered_before_kill = ScrapeValue(worker_metrics, completed);
  absl::StatusOr<int> killed = deployment.coordinator().SignalAndWait(SIGKILL, absl::Seconds(30));
  ASSERT_TRUE(killed.ok()) << killed.status();
  // The worker was busy with the job up to the kill.
  EXPECT_GE(answered_before_kill, static_cast<double>(before.size()));

  address = deployment.StartCoordinator({worker});
  ASSERT_FALSE(address.empty());
  auto client = Connect(address);
  ASSERT_NE(client, nullptr);
  const std::vector<v1::BatchResult> after = FollowResults(*client, id);
  absl::StatusOr<v1::Batch> done = client->Get(id);
  ASSERT_TRUE(done.ok()) << done.status();
  EXPECT_EQ(done->state(), v1::BATCH_STATE_COMPLETED) << "see " << deployment.log();
  EXPECT_EQ(done->request_counts().completed(), static_cast<uint64_t>(kRequests));
  ExpectEachAnsweredOnce(after, kRequests);
  // What was streamed before the kill is an exact prefix of the results after it.
  ASSERT_GE(after.size(), before.size());
  for (size_t i = 0; i < before.size(); ++i) {
    EXPECT_EQ(after[i].SerializeAsString(), before[i].SerializeAsString()) << "result " << i;
  }
}

}  // namespace
}  // namespace flatfleet::coordinator
