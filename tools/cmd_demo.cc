// `flatfleet demo`: a whole deployment on loopback in one command. Starts two workers and a
// coordinator as child processes of this same binary (ports chosen by the OS); the coordinator
// makes the two workers one tensor-parallel group (tp=2, INT8-compressed all-reduces unless
// --all-reduce-compression none): rank 0 batches and both run every forward. Submits a small
// batch to the built-in demo model (one line malformed on purpose: it becomes a failed result
// while the rest run), shows progress and some results, and stops everything with SIGTERM. The
// children die with the demo even if it crashes (PR_SET_PDEATHSIG).
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/child_process.h"
#include "coordinator/server/batch_client.h"
#include "tools/commands.h"

namespace flatfleet::tools {
namespace {

// A child process of this binary (the same `flatfleet`), stopped by SIGTERM if the demo dies.
absl::StatusOr<std::unique_ptr<ChildProcess>> SpawnSelf(std::vector<std::string> args,
                                                        const std::string& log_path) {
  args.insert(args.begin(), "/proc/self/exe");
  return ChildProcess::Spawn(args, {.log_path = log_path, .parent_death_signal = SIGTERM});
}

// The address from a child's "listening on HOST:PORT" line; errors name the child.
absl::StatusOr<std::string> WaitForListening(ChildProcess& child, const std::string& name,
                                             absl::Duration timeout) {
  absl::StatusOr<std::string> address = child.WaitForLine("listening on ", timeout);
  if (!address.ok()) {
    return absl::Status(address.status().code(),
                        absl::StrCat(name, ": ", address.status().message()));
  }
  return address;
}

struct DemoOptions {
  int requests = 16;
  double timeout_seconds = 180;
  std::string all_reduce_compression = "int8";
};

// Request lines for the demo; line `bad_line` (1-based, 0 for none) is malformed on purpose.
std::vector<std::string> DemoLines(int count, int bad_line) {
  const char* topics[] = {"the sea", "a lighthouse", "autumn", "a robot", "tea", "the moon"};
  std::vector<std::string> lines;
  for (int i = 0; i < count; ++i) {
    if (i + 1 == bad_line) {
      lines.push_back(absl::StrCat(R"({"custom_id": "q)", i,
                                   R"(", "body": {"prompt": "oops", "max_tokens": "sixteen"}})"));
      continue;
    }
    lines.push_back(absl::StrCat(R"({"custom_id": "q)", i,
                                 R"(", "body": {"prompt": "A story about )", topics[i % 6],
                                 R"(:", "max_tokens": 16, "seed": )", i, "}}"));
  }
  return lines;
}

int RunDemo(const DemoOptions& options) {
  char dir_template[] = "/tmp/flatfleet-demo-XXXXXX";
  if (mkdtemp(dir_template) == nullptr) {
    std::fprintf(stderr, "flatfleet demo: cannot create a temporary directory\n");
    return 1;
  }
  const std::string dir = dir_template;
  const std::string log = dir + "/processes.log";
  std::printf(
      "flatfleet demo: a coordinator and two workers forming one tensor-parallel group (tp=2, "
      "%s all-reduce) on loopback (logs: %s)\n",
      options.all_reduce_compression == "int8" ? "INT8-compressed" : "FP32", log.c_str());
  std::fflush(stdout);
  const absl::Duration start_timeout = absl::Seconds(60);
  // Declared first, destroyed last: the coordinator (declared later) stops before the workers.
  std::vector<std::unique_ptr<ChildProcess>> workers;
  std::unique_ptr<ChildProcess> coordinator_process;
  auto fail = [&](const absl::Status& status) {
    std::fprintf(stderr, "flatfleet demo: %s (see %s)\n", std::string(status.message()).c_str(),
                 log.c_str());
    coordinator_process.reset();
    workers.clear();
    return 1;
  };

  std::vector<std::string> worker_addresses;
  for (int i = 0; i < 2; ++i) {
    // The demo's TP=2 group runs on the CPU (Gloo) even where a GPU is visible: GPU tensor
    // parallelism is not in the service yet.
    auto worker = SpawnSelf({"serve", "worker", "--listen", "127.0.0.1:0", "--device", "cpu"}, log);
    if (!worker.ok()) return fail(worker.status());
    workers.push_back(*std::move(worker));
    absl::StatusOr<std::string> address =
        WaitForListening(*workers.back(), absl::StrCat("worker ", i + 1), start_timeout);
    if (!address.ok()) return fail(address.status());
    std::printf("  worker %d listening on %s\n", i + 1, address->c_str());
    worker_addresses.push_back(*address);
  }
  std::vector<std::string> coordinator_args = {"serve",
                                               "coordinator",
                                               "--listen",
                                               "127.0.0.1:0",
                                               "--db",
                                               dir + "/jobs.db",
                                               "--model",
                                               "demo=builtin:demo",
                                               "--tp",
                                               "2",
                                               "--all-reduce-compression",
                                               options.all_reduce_compression};
  for (const std::string& address : worker_addresses) {
    coordinator_args.push_back("--worker");
    coordinator_args.push_back(address);
  }
  auto spawned = SpawnSelf(coordinator_args, log);
  if (!spawned.ok()) return fail(spawned.status());
  coordinator_process = *std::move(spawned);
  absl::StatusOr<std::string> address =
      WaitForListening(*coordinator_process, "coordinator", start_timeout);
  if (!address.ok()) return fail(address.status());
  std::printf("  coordinator listening on %s\n", address->c_str());

  auto client = coordinator::BatchClient::Connect(*address);
  if (!client.ok()) return fail(client.status());
  v1::BatchOptions batch_options;
  batch_options.set_model("demo");
  (*batch_options.mutable_metadata())["source"] = "flatfleet demo";

  const int bad_line = options.requests / 2 + 1;
  std::printf("\nsubmitting %d lines; line %d is malformed on purpose\n", options.requests,
              bad_line);
  std::vector<std::string> lines = DemoLines(options.requests, bad_line);
  auto created = (*client)->Submit(batch_options, lines);
  if (!created.ok()) return fail(created.status());
  for (const v1::LineError& error : created->errors()) {
    std::printf("  line %llu: %s: %s\n", static_cast<unsigned long long>(error.line()),
                error.field().c_str(), error.message().c_str());
  }
  if (created->errors_size() != 1 || !created->has_batch()) {
    return fail(absl::InternalError("expected exactly one per-line error and a batch"));
  }
  std::printf("the malformed line becomes a failed result; the other %zu lines run\n",
              lines.size() - 1);
  const std::string batch_id = created->batch().id();
  std::printf("  batch %s\n\n", batch_id.c_str());

  const absl::Time deadline = absl::Now() + absl::Seconds(options.timeout_seconds);
  v1::Batch batch;
  uint64_t last_done = UINT64_MAX;
  while (true) {
    auto got = (*client)->Get(batch_id);
    if (!got.ok()) return fail(got.status());
    batch = *got;
    const uint64_t done = batch.request_counts().completed() + batch.request_counts().failed();
    if (done != last_done) {
      std::printf("  progress: %llu/%llu (%s)\n", static_cast<unsigned long long>(done),
                  static_cast<unsigned long long>(batch.request_counts().total()),
                  coordinator::BatchStateName(batch.state()).c_str());
      std::fflush(stdout);
      last_done = done;
    }
    if (batch.state() == v1::BATCH_STATE_COMPLETED || batch.state() == v1::BATCH_STATE_FAILED ||
        batch.state() == v1::BATCH_STATE_CANCELLED) {
      break;
    }
    if (absl::Now() > deadline) return fail(absl::DeadlineExceededError("the batch took too long"));
    absl::SleepFor(absl::Milliseconds(200));
  }

  std::printf("\nsome results:\n");
  int shown = 0;
  absl::Status streamed =
      (*client)->StreamResults(batch_id, 0, false, [&](const v1::BatchResult& r) {
        if (r.has_response()) {
          std::printf("  %s -> \"%s\" (%u tokens)\n", r.custom_id().c_str(),
                      r.response().text().c_str(), r.response().usage().completion_tokens());
        } else {
          std::printf("  %s -> error %s: %s\n", r.custom_id().c_str(), r.error().code().c_str(),
                      r.error().message().c_str());
        }
        return ++shown < 4;
      });
  if (!streamed.ok()) return fail(streamed);

  std::printf("\nshutting down\n");
  const int coordinator_exit = coordinator_process->Stop(absl::Seconds(15));
  int workers_exit = 0;
  for (auto& worker : workers) workers_exit |= worker->Stop(absl::Seconds(15));
  const bool completed = batch.state() == v1::BATCH_STATE_COMPLETED &&
                         batch.request_counts().completed() == lines.size() - 1 &&
                         batch.request_counts().failed() == 1;
  std::printf("batch %s: %s, %llu completed, %llu failed; processes exited %s\n", batch_id.c_str(),
              coordinator::BatchStateName(batch.state()).c_str(),
              static_cast<unsigned long long>(batch.request_counts().completed()),
              static_cast<unsigned long long>(batch.request_counts().failed()),
              coordinator_exit == 0 && workers_exit == 0 ? "cleanly" : "with errors");
  std::error_code ignored;
  if (completed && coordinator_exit == 0 && workers_exit == 0) {
    std::filesystem::remove_all(dir, ignored);
    return 0;
  }
  std::fprintf(stderr, "flatfleet demo: failed (logs kept in %s)\n", dir.c_str());
  return 1;
}

}  // namespace

CommandRunner RegisterDemoCommand(CLI::App& app) {
  auto options = std::make_shared<DemoOptions>();
  CLI::App* cmd = app.add_subcommand(
      "demo",
      "Run a coordinator and two workers forming one tensor-parallel group (tp=2) on loopback, "
      "submit a small batch to the built-in demo model, show progress and results, then stop "
      "everything");
  cmd->add_option("--requests", options->requests, "Lines in the demo batch")
      ->capture_default_str()
      ->check(CLI::Range(2, 1000));
  cmd->add_option("--timeout", options->timeout_seconds, "Seconds the batch may take")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--all-reduce-compression", options->all_reduce_compression,
                  "The group's all-reduces: int8 (compressed) or none (FP32)")
      ->capture_default_str()
      ->check(CLI::IsMember({"int8", "none"}));
  return [options] { return RunDemo(*options); };
}

}  // namespace flatfleet::tools
