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
#include <thread>
#include <vector>

#include "coordinator/server/batch_client.h"
#include "coordinator/server/coordinator_server.h"
#include "tools/commands.h"
#include "tools/security_options.h"
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
  double lease_seconds = 30 * 60;
  coordinator::BatchInputLimits input_limits;
  security::ApiServerFlags api_security;
  security::ClusterFlags cluster_security;
  int max_message_bytes = 16 << 20;
  uint64_t max_upload_bytes = uint64_t{256} << 20;
  unsigned tp = 0;
  std::string all_reduce_compression = "int8";
  double group_timeout_seconds = 30;
  double liveness_timeout_seconds = 10;
  double progress_timeout_seconds = 120;
};

int Fail(const absl::Status& status) {
  std::fprintf(stderr, "flatfleet serve coordinator: %s\n", std::string(status.message()).c_str());
  return 1;
}

// Tokens and secrets sent in plaintext can be read off the network (docs/SECURITY.md).
void WarnAboutPlaintextSecrets(const ServeCoordinatorOptions& options) {
  if (!options.api_security.api_token_file.empty() && options.api_security.tls_cert.empty() &&
      !security::IsLoopbackAddress(options.listen)) {
    std::fprintf(stderr,
                 "flatfleet serve coordinator: warning: API tokens travel in plaintext on %s; "
                 "add --tls-cert/--tls-key\n",
                 options.listen.c_str());
  }
  if (!options.cluster_security.secret_file.empty() && options.cluster_security.tls_ca.empty()) {
    for (const std::string& worker : options.workers) {
      if (security::IsLoopbackAddress(worker)) continue;
      std::fprintf(stderr,
                   "flatfleet serve coordinator: warning: the cluster secret travels in "
                   "plaintext to %s; add --cluster-tls-cert/-key/-ca\n",
                   worker.c_str());
    }
  }
}

int RunServeCoordinator(const ServeCoordinatorOptions& options) {
  // Blocked before any server thread exists, so that only sigwait() below sees them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  // A write past a file-size limit then fails like a full disk (and is retried) instead of
  // killing the process.
  signal(SIGXFSZ, SIG_IGN);

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
  server_options.scheduler.lease_ms = static_cast<int64_t>(options.lease_seconds * 1000);
  server_options.service.input_limits = options.input_limits;
  server_options.max_message_bytes = options.max_message_bytes;
  server_options.scheduler.worker_max_message_bytes = options.max_message_bytes;
  server_options.service.max_upload_bytes = options.max_upload_bytes;
  absl::StatusOr<security::ServerSecurity> api_security =
      security::LoadApiServerSecurity(options.api_security);
  if (!api_security.ok()) return Fail(api_security.status());
  server_options.api_security = *std::move(api_security);
  absl::StatusOr<security::ChannelSecurity> worker_channel =
      security::LoadClusterClientSecurity(options.cluster_security);
  if (!worker_channel.ok()) return Fail(worker_channel.status());
  server_options.scheduler.worker_channel = *std::move(worker_channel);
  WarnAboutPlaintextSecrets(options);
  server_options.planner.forced_tp = options.tp;
  server_options.scheduler.compress_all_reduce = options.all_reduce_compression == "int8";
  server_options.scheduler.group_timeout = absl::Seconds(options.group_timeout_seconds);
  server_options.scheduler.liveness_timeout = absl::Seconds(options.liveness_timeout_seconds);
  server_options.scheduler.progress_timeout = absl::Seconds(options.progress_timeout_seconds);
  auto server = coordinator::CoordinatorServer::Start(std::move(server_options));
  if (!server.ok()) return Fail(server.status());
  // First line of stdout: what scripts wait for when they asked for port 0.
  std::printf("listening on %s\n", (*server)->address().c_str());
  std::unique_ptr<engine::MetricsHttpServer> metrics_server;
  if (!options.metrics_listen.empty()) {
    coordinator::CoordinatorServer* coordinator = server->get();
    // /healthz: the process serves (a restart would not help a full disk); /readyz: it can take
    // work now, else why not.
    auto started = engine::MetricsHttpServer::Start(
        options.metrics_listen, coordinator->metrics().registry(), nullptr, [coordinator] {
          const std::string reason = coordinator->NotReadyReason();
          return engine::HealthzReply{reason.empty(), reason.empty() ? "ready\n" : reason + "\n"};
        });
    if (!started.ok()) return Fail(started.status());
    metrics_server = *std::move(started);
    const std::string& host = options.metrics_listen;
    std::printf("metrics on %s:%d\n", host.substr(0, host.rfind(':')).c_str(),
                metrics_server->port());
  }
  std::fflush(stdout);
  // Workers are probed after the API listens; report the plan (or why there is none) once made.
  std::thread report_plan([server = server->get(), name = model->name] {
    absl::StatusOr<coordinator::ClusterPlan> plan = server->WaitForPlan();
    if (!plan.ok()) {
      std::fprintf(stderr, "flatfleet serve coordinator: %s\n",
                   std::string(plan.status().message()).c_str());
      return;
    }
    std::fprintf(stderr, "flatfleet serve coordinator: model %s, tp=%u, %zu group(s)\n",
                 name.c_str(), plan->tp_size, plan->groups.size());
    for (const std::string& unused : plan->unused_workers) {
      std::fprintf(stderr, "flatfleet serve coordinator: worker %s left idle (not a full group)\n",
                   unused.c_str());
    }
  });

  int received = 0;
  sigwait(&stop_signals, &received);
  std::fprintf(stderr, "flatfleet serve coordinator: %s received; stopping\n", strsignal(received));
  metrics_server.reset();
  (*server)->Shutdown();  // Ends planning, so the report above ends too.
  report_plan.join();
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
  cmd->add_option("--liveness-timeout", options->liveness_timeout_seconds,
                  "Seconds without any heartbeat or result after which a worker group's work is "
                  "taken back and re-dispatched (a stopped or hung worker)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--progress-timeout", options->progress_timeout_seconds,
                  "Seconds a worker group with work may go without engine progress (a step) "
                  "before its work is re-dispatched; must outlast one engine step")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--in-flight-window", options->in_flight_window,
                  "Requests dispatched to one worker group at a time")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--lease-seconds", options->lease_seconds,
                  "How long a dispatched request may go unanswered before it is taken back "
                  "from its (stalled) worker and retried; must outlast the longest generation")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--max-batch-lines", options->input_limits.max_lines,
                  "Request lines per batch; a larger upload is refused as a whole")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--max-line-bytes", options->input_limits.max_line_bytes,
                  "Bytes per input line; a longer line becomes a failed result")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--tls-cert", options->api_security.tls_cert,
                  "Serve the API over TLS with this PEM certificate chain (with --tls-key)");
  cmd->add_option("--tls-key", options->api_security.tls_key, "PEM private key of --tls-cert");
  cmd->add_option("--api-token-file", options->api_security.api_token_file,
                  "Require 'authorization: Bearer <token>' on API calls; the file lists the "
                  "accepted tokens, one per line (health and reflection stay open)");
  AddClusterOptions(cmd, &options->cluster_security, /*coordinator_side=*/true);
  cmd->add_option("--max-message-bytes", options->max_message_bytes,
                  "Largest gRPC message accepted or sent on the API and on the channels to workers")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--max-upload-bytes", options->max_upload_bytes,
                  "Largest batch input (bytes of JSONL) one CreateBatch may carry")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  return [options] { return RunServeCoordinator(*options); };
}

}  // namespace flatfleet::tools
