// The fault matrix (docs/RELIABILITY.md): real processes of the `flatfleet` binary on loopback
// (two workers serving the built-in demo model, one coordinator on its SQLite file), a batch of
// 500 requests, and one fault each: a worker killed with SIGKILL, a worker SIGSTOPped past its
// lease, the coordinator killed with SIGKILL and restarted, the store's disk full and then
// freed, and a damaged store refused and restored from a backup. Each time every custom_id
// ends with exactly one result, within the stated bound.
#include <signal.h>
#include <sys/resource.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "coordinator/job_store.h"
#include "coordinator/server/batch_client.h"
#include "gtest/gtest.h"
#include "tests/coordinator/child_process.h"
#include "tests/quant/test_random.h"

namespace flatfleet::coordinator {
namespace {

using testing_util::ChildProcess;
using testing_util::HttpGet;
using testing_util::MakeTempDir;

constexpr int kRequests = 500;
// Each fault's batch must finish within this (it takes a few seconds on a loaded 2-core CI
// machine); stated in docs/RELIABILITY.md.
constexpr absl::Duration kBatchBound = absl::Seconds(60);
constexpr absl::Duration kStartTimeout = absl::Seconds(60);

int PortOf(const std::string& address) { return std::stoi(address.substr(address.rfind(':') + 1)); }

double ScrapeValue(int port, const std::string& series) {
  absl::StatusOr<std::string> body = HttpGet(port, "/metrics", absl::Seconds(5));
  if (!body.ok()) return 0;
  for (absl::string_view line : absl::StrSplit(*body, '\n')) {
    if (absl::StartsWith(line, series + " ")) {
      double value = 0;
      if (absl::SimpleAtod(line.substr(series.size() + 1), &value)) return value;
    }
  }
  return 0;
}

std::vector<std::string> Lines(uint64_t salt) {
  std::vector<std::string> lines;
  for (int i = 0; i < kRequests; ++i) {
    lines.push_back(absl::StrCat(R"({"custom_id": "r)", i, R"(", "body": {"prompt": "Fault )", salt,
                                 " ", i, R"(", "max_tokens": 6, "seed": )", salt + i, "}}"));
  }
  return lines;
}

class FaultMatrixTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir(::testing::UnitTest::GetInstance()->current_test_info()->name());
    db_ = dir_ + "/jobs.db";
  }

  std::string log() const { return dir_ + "/processes.log"; }

  std::string StartWorker() {
    auto worker = ChildProcess::Spawn({FLATFLEET_BINARY, "serve", "worker", "--listen",
                                       "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"},
                                      {.log_path = log()});
    EXPECT_TRUE(worker.ok()) << worker.status();
    if (!worker.ok()) return "";
    auto address = (*worker)->WaitForLine("listening on ", kStartTimeout);
    EXPECT_TRUE(address.ok()) << address.status() << "; see " << log();
    auto metrics = (*worker)->WaitForLine("metrics on ", kStartTimeout);
    EXPECT_TRUE(metrics.ok()) << metrics.status();
    if (metrics.ok()) worker_metrics_.push_back(PortOf(*metrics));
    workers_.push_back(*std::move(worker));
    addresses_.push_back(address.value_or(""));
    return address.value_or("");
  }

  std::vector<std::string> CoordinatorArgv() const {
    // Short lease and liveness so stalls resolve in seconds; small windows spread the work.
    std::vector<std::string> argv = {FLATFLEET_BINARY,
                                     "serve",
                                     "coordinator",
                                     "--listen",
                                     "127.0.0.1:0",
                                     "--db",
                                     db_,
                                     "--model",
                                     "demo=builtin:demo",
                                     "--in-flight-window",
                                     "8",
                                     "--metrics-listen",
                                     "127.0.0.1:0",
                                     "--lease-seconds",
                                     "3",
                                     "--liveness-timeout",
                                     "1.5",
                                     "--progress-timeout",
                                     "5"};
    for (const std::string& worker : addresses_) {
      argv.push_back("--worker");
      argv.push_back(worker);
    }
    return argv;
  }

  // Starts the coordinator on the test's database; returns its address ("" on failure).
  std::string StartCoordinator() {
    auto coordinator =
        ChildProcess::Spawn(CoordinatorArgv(), {.log_path = dir_ + "/coordinator.log"});
    EXPECT_TRUE(coordinator.ok()) << coordinator.status();
    if (!coordinator.ok()) return "";
    auto address = (*coordinator)->WaitForLine("listening on ", kStartTimeout);
    if (!address.ok()) return "";
    auto metrics = (*coordinator)->WaitForLine("metrics on ", kStartTimeout);
    EXPECT_TRUE(metrics.ok()) << metrics.status();
    if (metrics.ok()) coordinator_metrics_ = PortOf(*metrics);
    coordinator_ = *std::move(coordinator);
    auto client = BatchClient::Connect(*address, absl::Seconds(30));
    EXPECT_TRUE(client.ok()) << client.status();
    if (client.ok()) client_ = *std::move(client);
    return *address;
  }

  void StartAll() {
    ASSERT_FALSE(StartWorker().empty());
    ASSERT_FALSE(StartWorker().empty());
    ASSERT_FALSE(StartCoordinator().empty()) << "see " << dir_ << "/coordinator.log";
  }

  std::string Submit() {
    v1::BatchOptions options;
    options.set_model("demo");
    absl::StatusOr<v1::CreateBatchResponse> created =
        client_->Submit(options, Lines(::testing::UnitTest::GetInstance()->random_seed()));
    EXPECT_TRUE(created.ok()) << created.status();
    if (!created.ok()) return "";
    started_ = absl::Now();
    return created->batch().id();
  }

  // Waits until at least `answered` requests have results; false if the batch ended first.
  bool WaitForAnswered(const std::string& id, uint64_t answered) {
    const absl::Time deadline = absl::Now() + kBatchBound;
    while (absl::Now() < deadline) {
      absl::StatusOr<v1::Batch> batch = client_->Get(id);
      if (batch.ok()) {
        if (batch->state() != v1::BATCH_STATE_IN_PROGRESS) return false;
        if (batch->request_counts().completed() + batch->request_counts().failed() >= answered) {
          return true;
        }
      }
      absl::SleepFor(absl::Milliseconds(5));
    }
    return false;
  }

  // Follows the results to the end of the batch (resuming a broken stream), then checks that
  // every custom_id has exactly one result, a response, and that the batch ended in time.
  void ExpectEachAnsweredOnceInTime(const std::string& id) {
    std::vector<v1::BatchResult> results;
    const absl::Time deadline = std::max(started_ + kBatchBound, absl::Now() + absl::Seconds(10));
    bool ended = false;
    while (absl::Now() < deadline && !ended) {
      ended = client_
                  ->StreamResults(id, results.size(), /*follow=*/true,
                                  [&](const v1::BatchResult& result) {
                                    results.push_back(result);
                                    return true;
                                  })
                  .ok();
      if (!ended) absl::SleepFor(absl::Milliseconds(100));
    }
    const absl::Duration took = absl::Now() - started_;
    ASSERT_TRUE(ended) << "the batch did not end within " << kBatchBound << "; see " << dir_;
    EXPECT_LT(took, kBatchBound);
    std::printf("[ fault    ] %s: %d requests answered in %s\n",
                ::testing::UnitTest::GetInstance()->current_test_info()->name(), kRequests,
                absl::FormatDuration(took).c_str());
    std::map<std::string, int> seen;
    for (size_t i = 0; i < results.size(); ++i) {
      EXPECT_EQ(results[i].sequence(), i);
      ++seen[results[i].custom_id()];
      EXPECT_TRUE(results[i].has_response()) << results[i].ShortDebugString();
    }
    EXPECT_EQ(results.size(), static_cast<size_t>(kRequests)) << "see " << dir_;
    for (int i = 0; i < kRequests; ++i) EXPECT_EQ(seen[absl::StrCat("r", i)], 1) << "r" << i;
    absl::StatusOr<v1::Batch> batch = client_->Get(id);
    ASSERT_TRUE(batch.ok()) << batch.status();
    EXPECT_EQ(batch->state(), v1::BATCH_STATE_COMPLETED);
    EXPECT_EQ(batch->request_counts().completed(), static_cast<uint64_t>(kRequests));
  }

  std::string dir_;
  std::string db_;
  std::vector<std::unique_ptr<ChildProcess>> workers_;
  std::vector<std::string> addresses_;
  std::vector<int> worker_metrics_;
  std::unique_ptr<ChildProcess> coordinator_;
  int coordinator_metrics_ = 0;
  std::unique_ptr<BatchClient> client_;
  absl::Time started_;
};

TEST_F(FaultMatrixTest, WorkerKilled) {
  StartAll();
  const std::string id = Submit();
  ASSERT_TRUE(WaitForAnswered(id, 50)) << "finished before the fault";
  ASSERT_TRUE(workers_[0]->SignalAndWait(SIGKILL, absl::Seconds(10)).ok());
  ExpectEachAnsweredOnceInTime(id);
}

TEST_F(FaultMatrixTest, WorkerStoppedPastItsLease) {
  StartAll();
  const std::string id = Submit();
  ASSERT_TRUE(WaitForAnswered(id, 50)) << "finished before the fault";
  ASSERT_EQ(kill(workers_[0]->pid(), SIGSTOP), 0);
  const absl::Time stopped_at = absl::Now();
  ExpectEachAnsweredOnceInTime(id);
  // The batch did not wait for the stopped worker (seen as stalled within the 1.5 s liveness
  // timeout, not the 3 s lease).
  EXPECT_GT(ScrapeValue(coordinator_metrics_, "flatfleet_coordinator_group_stalls_total"), 0);
  // Resumed past its lease, the worker's late answers change nothing.
  absl::SleepFor(stopped_at + absl::Seconds(4) - absl::Now());
  kill(workers_[0]->pid(), SIGCONT);
  absl::SleepFor(absl::Seconds(1));
  ExpectEachAnsweredOnceInTime(id);
}

TEST_F(FaultMatrixTest, CoordinatorKilledAndRestarted) {
  StartAll();
  const std::string id = Submit();
  ASSERT_TRUE(WaitForAnswered(id, 100)) << "finished before the fault";
  ASSERT_TRUE(coordinator_->SignalAndWait(SIGKILL, absl::Seconds(10)).ok());
  ASSERT_FALSE(StartCoordinator().empty());
  ExpectEachAnsweredOnceInTime(id);
}

TEST_F(FaultMatrixTest, DiskFullThenFreed) {
  StartAll();
  const std::string id = Submit();
  ASSERT_TRUE(WaitForAnswered(id, 20)) << "finished before the fault";
  // The disk is full: no file of the coordinator may grow (writes fail with EFBIG, as SQLite
  // sees ENOSPC: its write fails).
  std::error_code ignored;
  const auto size = [&](const std::string& path) {
    const auto bytes = std::filesystem::file_size(path, ignored);
    return ignored ? 0 : bytes;
  };
  const rlim_t limit = std::max(size(db_), size(db_ + "-wal"));
  rlimit full{limit, RLIM_INFINITY};
  ASSERT_EQ(prlimit(coordinator_->pid(), RLIMIT_FSIZE, &full, nullptr), 0);
  // Seen as a failing store: not ready, errors counted, new batches refused. The count is the
  // one that ended the wait: a store whose failed commit shrank its WAL can take the kept results
  // again under the same limit, so a second scrape may already read 0 (CI saw it).
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  double unrecorded = 0;
  while (absl::Now() < deadline) {
    unrecorded = ScrapeValue(coordinator_metrics_, "flatfleet_coordinator_unrecorded_results");
    if (unrecorded > 0) break;
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_GT(unrecorded, 0) << "see " << dir_;
  EXPECT_FALSE(HttpGet(coordinator_metrics_, "/readyz", absl::Seconds(5)).ok());
  v1::BatchOptions options;
  options.set_model("demo");
  absl::StatusOr<v1::CreateBatchResponse> refused = client_->Submit(options, Lines(1));
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kUnavailable) << refused.status();
  absl::SleepFor(absl::Seconds(1));
  // Freed.
  rlimit freed{RLIM_INFINITY, RLIM_INFINITY};
  ASSERT_EQ(prlimit(coordinator_->pid(), RLIMIT_FSIZE, &freed, nullptr), 0);
  ExpectEachAnsweredOnceInTime(id);
  EXPECT_TRUE(HttpGet(coordinator_metrics_, "/readyz", absl::Seconds(5)).ok());
}

TEST_F(FaultMatrixTest, DamagedStoreIsRefusedThenRestoredFromABackup) {
  const uint64_t seed = quant::test_util::FreshSeed();
  SCOPED_TRACE(absl::StrCat("seed ", seed));
  StartAll();
  const std::string id = Submit();
  ASSERT_TRUE(WaitForAnswered(id, 100)) << "finished before the fault";
  // An online backup of the running coordinator's store (docs/RELIABILITY.md).
  const std::string backup = dir_ + "/backup.db";
  {
    JobStoreOptions reader;
    reader.recover_in_flight = false;  // The coordinator owns the work in flight.
    auto store = JobStore::Open(db_, reader);
    ASSERT_TRUE(store.ok()) << store.status();
    ASSERT_TRUE((*store)->BackupTo(backup).ok());
  }
  EXPECT_EQ(coordinator_->Stop(absl::Seconds(20)), 0);
  // 200 random bytes over a page of the (checkpointed) store.
  std::mt19937_64 rng(seed);
  const int64_t pages = static_cast<int64_t>(std::filesystem::file_size(db_)) / 4096;
  ASSERT_GT(pages, 2);
  {
    std::fstream file(db_, std::ios::in | std::ios::out | std::ios::binary);
    file.seekp((1 + static_cast<int64_t>(rng() % static_cast<uint64_t>(pages - 1))) * 4096);
    for (int i = 0; i < 200; ++i) file.put(static_cast<char>(rng()));
  }
  // Refused at start-up, naming the file, instead of being served.
  auto refused = ChildProcess::Spawn(CoordinatorArgv(), {.log_path = dir_ + "/refused.log"});
  ASSERT_TRUE(refused.ok()) << refused.status();
  EXPECT_FALSE((*refused)->WaitForLine("listening on ", absl::Seconds(30)).ok());
  EXPECT_EQ((*refused)->Stop(absl::Seconds(5)), 1);
  std::ifstream refusal(dir_ + "/refused.log");
  const std::string message((std::istreambuf_iterator<char>(refusal)),
                            std::istreambuf_iterator<char>());
  EXPECT_TRUE(absl::StrContains(message, db_)) << message;
  EXPECT_TRUE(absl::StrContains(message, "damaged")) << message;
  // Restored: the batch resumes from the backup and ends with every request answered once.
  for (const char* suffix : {"-wal", "-shm"}) std::filesystem::remove(db_ + suffix);
  std::filesystem::copy_file(backup, db_, std::filesystem::copy_options::overwrite_existing);
  ASSERT_FALSE(StartCoordinator().empty()) << "see " << dir_;
  ExpectEachAnsweredOnceInTime(id);
}

}  // namespace
}  // namespace flatfleet::coordinator
