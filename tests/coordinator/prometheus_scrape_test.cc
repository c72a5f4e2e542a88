// A real Prometheus server (Debian's `prometheus`) scrapes a running coordinator's and a
// worker's /metrics; its HTTP API must then report both targets up and the flatfleet metrics
// with the values the job implies.
#include <signal.h>
#include <unistd.h>

#include <cctype>
#include <fstream>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "coordinator/server/batch_client.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/coordinator/child_process.h"

namespace flatfleet::coordinator {
namespace {

using testing_util::ChildProcess;
using testing_util::HttpGet;
using testing_util::MakeTempDir;
using testing_util::PickFreePort;

constexpr absl::Duration kTimeout = absl::Seconds(180);

// Runs an instant query; returns the result vector once it is non-empty (or an empty array
// at the deadline).
nlohmann::json QueryUntil(int port, const std::string& query,
                          const std::function<bool(const nlohmann::json&)>& done) {
  std::string encoded;
  for (char c : query) {
    if (std::isalnum(static_cast<unsigned char>(c)) || c == '_') {
      encoded += c;
    } else {
      encoded += absl::StrFormat("%%%02X", static_cast<unsigned char>(c));
    }
  }
  const absl::Time deadline = absl::Now() + kTimeout;
  nlohmann::json result = nlohmann::json::array();
  while (absl::Now() < deadline) {
    absl::StatusOr<std::string> body =
        HttpGet(port, "/api/v1/query?query=" + encoded, absl::Seconds(10));
    if (body.ok()) {
      const nlohmann::json reply = nlohmann::json::parse(*body, nullptr, false);
      if (reply.is_object() && reply.value("status", "") == "success") {
        result = reply["data"]["result"];
        if (done(result)) return result;
      }
    }
    absl::SleepFor(absl::Milliseconds(250));
  }
  ADD_FAILURE() << "query '" << query << "' never matched; last: " << result.dump();
  return result;
}

double SampleValue(const nlohmann::json& sample) {
  return std::stod(sample["value"][1].get<std::string>());
}

TEST(PrometheusScrapeTest, ScrapesCoordinatorAndWorkerMetrics) {
  const std::string prometheus = FLATFLEET_PROMETHEUS_BINARY;
  if (prometheus.empty() || access(prometheus.c_str(), X_OK) != 0) {
    GTEST_SKIP() << "no prometheus binary (scripts/install-deps.sh installs it)";
  }
  const std::string dir = MakeTempDir("prometheus_scrape");
  const std::string log = dir + "/processes.log";

  auto worker = ChildProcess::Spawn({FLATFLEET_BINARY, "serve", "worker", "--listen", "127.0.0.1:0",
                                     "--metrics-listen", "127.0.0.1:0"},
                                    {.log_path = log});
  ASSERT_TRUE(worker.ok()) << worker.status();
  auto worker_address = (*worker)->WaitForLine("listening on ", kTimeout);
  ASSERT_TRUE(worker_address.ok()) << worker_address.status() << "; see " << log;
  auto worker_metrics = (*worker)->WaitForLine("metrics on ", kTimeout);
  ASSERT_TRUE(worker_metrics.ok()) << worker_metrics.status();

  auto coordinator =
      ChildProcess::Spawn({FLATFLEET_BINARY, "serve", "coordinator", "--listen", "127.0.0.1:0",
                           "--metrics-listen", "127.0.0.1:0", "--db", dir + "/jobs.db", "--model",
                           "demo=builtin:demo", "--worker", *worker_address},
                          {.log_path = log});
  ASSERT_TRUE(coordinator.ok()) << coordinator.status();
  auto coordinator_address = (*coordinator)->WaitForLine("listening on ", kTimeout);
  ASSERT_TRUE(coordinator_address.ok()) << coordinator_address.status() << "; see " << log;
  auto coordinator_metrics = (*coordinator)->WaitForLine("metrics on ", kTimeout);
  ASSERT_TRUE(coordinator_metrics.ok()) << coordinator_metrics.status();

  // A small job, so that the request counters have values to check.
  constexpr int kRequests = 5;
  auto client = BatchClient::Connect(*coordinator_address, absl::Seconds(60));
  ASSERT_TRUE(client.ok()) << client.status();
  std::vector<std::string> lines;
  const uint64_t salt = ::testing::UnitTest::GetInstance()->random_seed();
  for (int i = 0; i < kRequests; ++i) {
    lines.push_back(absl::StrCat(R"({"custom_id": "m)", i, R"(", "body": {"prompt": "Metric )",
                                 salt + i, R"(", "max_tokens": 6}})"));
  }
  v1::BatchOptions options;
  options.set_model("demo");
  auto created = (*client)->Submit(options, lines);
  ASSERT_TRUE(created.ok()) << created.status();
  ASSERT_TRUE(created->has_batch());
  uint64_t results = 0;
  ASSERT_TRUE((*client)
                  ->StreamResults(created->batch().id(), 0, /*follow=*/true,
                                  [&](const v1::BatchResult&) { return ++results > 0; })
                  .ok());
  ASSERT_EQ(results, static_cast<uint64_t>(kRequests));

  absl::StatusOr<int> port = PickFreePort();
  ASSERT_TRUE(port.ok()) << port.status();
  const std::string config = dir + "/prometheus.yml";
  {
    std::ofstream out(config);
    out << "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
        << "scrape_configs:\n"
        << "  - job_name: coordinator\n    static_configs:\n      - targets: ['"
        << *coordinator_metrics << "']\n"
        << "  - job_name: worker\n    static_configs:\n      - targets: ['" << *worker_metrics
        << "']\n";
  }
  auto server = ChildProcess::Spawn(
      {prometheus, "--config.file=" + config, "--storage.tsdb.path=" + dir + "/data",
       absl::StrCat("--web.listen-address=127.0.0.1:", *port), "--log.level=warn"},
      {.log_path = dir + "/prometheus.log"});
  ASSERT_TRUE(server.ok()) << server.status();

  // Both targets up.
  const nlohmann::json up = QueryUntil(*port, "up", [](const nlohmann::json& result) {
    if (result.size() != 2) return false;
    for (const nlohmann::json& sample : result) {
      if (SampleValue(sample) != 1) return false;
    }
    return true;
  });
  ASSERT_EQ(up.size(), 2u) << "see " << dir << "/prometheus.log";
  std::set<std::string> jobs;
  for (const nlohmann::json& sample : up) jobs.insert(sample["metric"]["job"].get<std::string>());
  EXPECT_EQ(jobs, (std::set<std::string>{"coordinator", "worker"}));

  // The coordinator's and the worker's counters as Prometheus stored them.
  const nlohmann::json succeeded =
      QueryUntil(*port, R"(flatfleet_coordinator_requests_total{outcome="succeeded"})",
                 [](const nlohmann::json& result) {
                   return result.size() == 1 && SampleValue(result[0]) == kRequests;
                 });
  ASSERT_EQ(succeeded.size(), 1u);
  EXPECT_EQ(succeeded[0]["metric"]["instance"], *coordinator_metrics);
  EXPECT_EQ(succeeded[0]["metric"]["model"], "demo");
  // The worker's KV-cache usage ratio, a fraction beside the block counts.
  const nlohmann::json kv_ratio =
      QueryUntil(*port, "flatfleet_worker_kv_cache_usage_ratio", [](const nlohmann::json& result) {
        return result.size() == 1 && SampleValue(result[0]) >= 0 && SampleValue(result[0]) <= 1;
      });
  ASSERT_EQ(kv_ratio.size(), 1u);
  // Every request's queue, prefill and decode times were observed.
  const nlohmann::json queued = QueryUntil(
      *port, "flatfleet_worker_request_queue_time_seconds_count", [](const nlohmann::json& result) {
        return result.size() == 1 && SampleValue(result[0]) >= kRequests;
      });
  ASSERT_EQ(queued.size(), 1u);
  const nlohmann::json worker_requests =
      QueryUntil(*port, "sum(flatfleet_worker_requests_total)", [](const nlohmann::json& result) {
        return result.size() == 1 && SampleValue(result[0]) >= kRequests;
      });
  ASSERT_EQ(worker_requests.size(), 1u);
  const nlohmann::json generated = QueryUntil(
      *port, "flatfleet_coordinator_generation_tokens_total", [](const nlohmann::json& result) {
        return result.size() == 1 && SampleValue(result[0]) > 0;
      });
  ASSERT_EQ(generated.size(), 1u);
  EXPECT_LE(SampleValue(generated[0]), 6.0 * kRequests);

  ASSERT_TRUE((*server)->SignalAndWait(SIGTERM, absl::Seconds(60)).ok());
}

}  // namespace
}  // namespace flatfleet::coordinator
