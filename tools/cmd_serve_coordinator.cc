// `flatfleet serve coordinator`: the batch coordinator. Serves BatchService (plus gRPC health
// and reflection) on --listen (default 127.0.0.1:7070, the CLI clients' default), keeps jobs in
// the SQLite file --db, and drives the --worker processes. Prints 'listening on HOST:PORT' as
// its first stdout line; SIGTERM/SIGINT stop it (in-flight requests return to pending).
#include <pthread.h>
#include <signal.h>

#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "coordinator/server/batch_client.h"
#include "coordinator/server/coordinator_server.h"
#include "tools/commands.h"
#include "worker/serving/metrics_http_server.h"

namespace flatfleet::tools {
namespace {

struct ServeCoordinatorOptions {
  std::string listen = coordinator::kDefaultCoordinatorAddress;
  std::string metrics_listen;
  std::string db;
  std::vector<std::string> workers;
  std::string model;
  std::vector<std::string> input_dirs;
  double worker_memory_gib = 0;
  int in_flight_window = 32;
  unsigned tp = 0;
  std::string all_reduce_compression = "int8";
  double group_timeout_seconds = 30;
};

int Fail(const absl::Status& status) {
  std::fprintf(stderr, "flatfleet serve coordinator: %s\n", std::string(status.message()).c_str());
  return 1;
}

int RunServeCoordinator(const ServeCoordinatorOptions& options) {
  // Blocked before any server thread exists, so that only sigwait() below sees them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  absl::StatusOr<coordinator::ModelSpec> model = coordinator::ParseModelSpec(options.model);
  if (!model.ok()) return Fail(model.status());
  coordinator::CoordinatorOptions server_options;
  server_options.listen_address = options.listen;
  server_options.db_path = options.db;
  server_options.model = *model;
  // 0: the planner asks each worker's Health for its memory.
  const auto memory_bytes = static_cast<uint64_t>(options.worker_memory_gib * (1ull << 30));
  for (const std::string& address : options.workers) {
    server_options.workers.push_back(coordinator::WorkerInfo{address, memory_bytes});
  }
  server_options.service.input_dirs = options.input_dirs;
  server_options.scheduler.in_flight_window = options.in_flight_window;
  server_options.planner.forced_tp = options.tp;
  server_options.scheduler.compress_all_reduce = options.all_reduce_compression == "int8";
  server_options.scheduler.group_timeout = absl::Seconds(options.group_timeout_seconds);
  auto server = coordinator::CoordinatorServer::Start(std::move(server_options));
  if (!server.ok()) return Fail(server.status());
  // First line of stdout: what scripts wait for when they asked for port 0.
  std::printf("listening on %s\n", (*server)->address().c_str());
  std::unique_ptr<engine::MetricsHttpServer> metrics_server;
  if (!options.metrics_listen.empty()) {
    auto started = engine::MetricsHttpServer::Start(options.metrics_listen,
                                                    (*server)->metrics().registry(), nullptr);
    if (!started.ok()) return Fail(started.status());
    metrics_server = *std::move(started);
    const std::string& host = options.metrics_listen;
    std::printf("metrics on %s:%d\n", host.substr(0, host.rfind(':')).c_str(),
                metrics_server->port());
  }
  std::fflush(stdout);
  const coordinator::ClusterPlan& plan = (*server)->plan();
  std::fprintf(stderr, "flatfleet serve coordinator: model %s, tp=%u, %zu group(s)\n",
               model->name.c_str(), plan.tp_size, plan.groups.size());
  for (const std::string& unused : plan.unused_workers) {
    std::fprintf(stderr, "flatfleet serve coordinator: worker %s left idle (not a full group)\n",
                 unused.c_str());
  }

  int received = 0;
  sigwait(&stop_signals, &received);
  std::fprintf(stderr, "flatfleet serve coordinator: %s received; stopping\n", strsignal(received));
  metrics_server.reset();
  (*server)->Shutdown();
  return 0;
}

}  // namespace

CommandRunner RegisterServeCoordinatorCommand(CLI::App& serve) {
  auto options = std::make_shared<ServeCoordinatorOptions>();
  CLI::App* cmd = serve.add_subcommand(
      "coordinator",
      "Run the batch coordinator (BatchService over gRPC). Prints 'listening on HOST:PORT' as "
      "its first line; SIGTERM/SIGINT stop it.");
  cmd->add_option("--listen", options->listen, "gRPC address HOST:PORT; port 0 picks a free one")
      ->capture_default_str();
  cmd->add_option("--metrics-listen", options->metrics_listen,
                  "HTTP address HOST:PORT for /metrics (port 0 picks one); none when omitted");
  cmd->add_option("--db", options->db, "SQLite file holding jobs and results")->required();
  cmd->add_option("--worker", options->workers, "Worker address HOST:PORT (repeat for each)")
      ->required();
  cmd->add_option("--model", options->model, "NAME=DIR or NAME=builtin:demo")->required();
  cmd->add_option("--input-dir", options->input_dirs,
                  "Directory whose files CreateBatch may name as input_path (repeatable)");
  cmd->add_option("--worker-memory-gib", options->worker_memory_gib,
                  "Device memory per worker for planning tensor parallelism (0: ask each "
                  "worker's Health)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--tp", options->tp,
                  "Tensor-parallel ranks per worker group (0: the planner chooses from model "
                  "size and worker memory)")
      ->capture_default_str()
      ->check(CLI::Range(0, 64));
  cmd->add_option("--all-reduce-compression", options->all_reduce_compression,
                  "Tensor-parallel all-reduces: int8 (per-block INT8, less traffic) or none "
                  "(FP32, exact)")
      ->capture_default_str()
      ->check(CLI::IsMember({"int8", "none"}));
  cmd->add_option("--group-timeout", options->group_timeout_seconds,
                  "Seconds a tensor-parallel rank waits for its peers before the group fails")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--in-flight-window", options->in_flight_window,
                  "Requests dispatched to one worker group at a time")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  return [options] { return RunServeCoordinator(*options); };
}

}  // namespace flatfleet::tools
