// `flatfleet serve coordinator`: the batch coordinator. Serves BatchService (plus gRPC health
// and reflection) on --listen (default 127.0.0.1:7070, the CLI clients' default), keeps jobs in
// the SQLite file --db, and drives the --worker processes (or those --worker-dns finds). Prints
// 'listening on HOST:PORT' as its first stdout line; SIGTERM/SIGINT stop it (in-flight requests
// return to pending).
#include <pthread.h>
#include <signal.h>
#include <time.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/chat_template/chat_template.h"
#include "common/chat_template/chat_template_files.h"
#include "coordinator/http/file_store.h"
#include "coordinator/http/openai_api.h"
#include "coordinator/http/openai_http_server.h"
#include "coordinator/server/batch_client.h"
#include "coordinator/server/coordinator_server.h"
#include "coordinator/server/worker_discovery.h"
#include "tools/commands.h"
#include "tools/security_options.h"
#include "worker/serving/metrics_http_server.h"

namespace flatfleet::tools {
namespace {

struct ServeCoordinatorOptions {
  std::string listen = coordinator::kDefaultCoordinatorAddress;
  std::string metrics_listen;
  std::string http_listen;
  std::string http_files_dir;  // <db>.files when empty
  std::string db;
  std::vector<std::string> workers;
  std::vector<std::string> worker_dns;
  int workers_per_host = 1;
  double worker_dns_interval_seconds = 30;
  int min_workers = 1;
  std::string model;
  std::string chat_template;
  std::vector<std::string> input_dirs;
  double worker_memory_gib = 0;
  int64_t plan_kv_cache_tokens = 8192;
  double plan_memory_fraction = 0.9;
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
    std::vector<std::string> destinations = options.workers;
    destinations.insert(destinations.end(), options.worker_dns.begin(), options.worker_dns.end());
    for (const std::string& worker : destinations) {
      if (security::IsLoopbackAddress(worker)) continue;
      std::fprintf(stderr,
                   "flatfleet serve coordinator: warning: the cluster secret travels in "
                   "plaintext to %s; add --cluster-tls-cert/-key/-ca\n",
                   worker.c_str());
    }
  }
}

// A running coordinator and the HTTP server that exposes its metrics (which it references).
struct Serving {
  std::unique_ptr<coordinator::CoordinatorServer> server;
  std::unique_ptr<engine::MetricsHttpServer> metrics_server;
  // The OpenAI-compatible HTTP API (--http-listen), over `server`'s store and scheduler.
  std::unique_ptr<coordinator::http::FileStore> http_files;
  std::unique_ptr<coordinator::http::OpenAiApi> http_api;
  std::unique_ptr<coordinator::http::OpenAiHttpServer> http_server;
  std::thread report_plan;  // says the plan (or why there is none) once the workers answered

  void Stop() {
    http_server.reset();
    http_api.reset();
    http_files.reset();
    metrics_server.reset();
    if (server != nullptr) server->Shutdown();  // ends planning, so report_plan ends too
    if (report_plan.joinable()) report_plan.join();
    server.reset();
  }
};

absl::StatusOr<Serving> StartServing(const ServeCoordinatorOptions& options,
                                     const coordinator::ModelSpec& model,
                                     const std::vector<std::string>& workers) {
  coordinator::CoordinatorOptions server_options;
  server_options.listen_address = options.listen;
  server_options.db_path = options.db;
  server_options.model = model;
  // 0: the planner asks each worker's Health for its memory.
  const auto memory_bytes = static_cast<uint64_t>(options.worker_memory_gib * (1ull << 30));
  for (const std::string& address : workers) {
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
  if (!api_security.ok()) return api_security.status();
  server_options.api_security = *api_security;
  absl::StatusOr<security::ChannelSecurity> worker_channel =
      security::LoadClusterClientSecurity(options.cluster_security);
  if (!worker_channel.ok()) return worker_channel.status();
  server_options.scheduler.worker_channel = *std::move(worker_channel);
  server_options.planner.forced_tp = options.tp;
  server_options.planner.device_memory_fraction = options.plan_memory_fraction;
  server_options.rank_memory.kv_cache_tokens = options.plan_kv_cache_tokens;
  server_options.scheduler.compress_all_reduce = options.all_reduce_compression == "int8";
  server_options.scheduler.group_timeout = absl::Seconds(options.group_timeout_seconds);
  server_options.scheduler.liveness_timeout = absl::Seconds(options.liveness_timeout_seconds);
  server_options.scheduler.progress_timeout = absl::Seconds(options.progress_timeout_seconds);
  Serving serving;
  absl::StatusOr<std::unique_ptr<coordinator::CoordinatorServer>> server =
      coordinator::CoordinatorServer::Start(std::move(server_options));
  if (!server.ok()) return server.status();
  serving.server = *std::move(server);
  // First line of stdout: what scripts wait for when they asked for port 0.
  std::printf("listening on %s\n", serving.server->address().c_str());
  if (!options.http_listen.empty()) {
    const std::string files_dir =
        options.http_files_dir.empty() ? options.db + ".files" : options.http_files_dir;
    absl::StatusOr<std::unique_ptr<coordinator::http::FileStore>> files =
        coordinator::http::FileStore::Open(files_dir);
    if (!files.ok()) return files.status();
    serving.http_files = *std::move(files);
    coordinator::http::OpenAiApiOptions api_options;
    api_options.model = model.name;
    api_options.input_limits = options.input_limits;
    api_options.max_file_bytes = options.max_upload_bytes;
    api_options.created_at_s = absl::ToUnixSeconds(absl::Now());
    coordinator::Scheduler* scheduler = &serving.server->scheduler();
    coordinator::http::OpenAiApiBackend backend;
    backend.store = &serving.server->store();
    backend.files = serving.http_files.get();
    backend.generate = [scheduler](const v1::RequestBody& body, absl::Duration timeout) {
      return scheduler->Generate(body, timeout);
    };
    backend.stream_generate = [scheduler](const v1::RequestBody& body, absl::Duration timeout,
                                          const std::function<bool(const std::string&)>& on_text) {
      return scheduler->Generate(body, timeout, on_text);
    };
    backend.wake = [scheduler] { scheduler->WakeAll(); };
    backend.stop_job = [scheduler](const std::string& job,
                                   const std::vector<coordinator::RequestKey>& requests) {
      scheduler->StopJob(job, requests);
    };
    serving.http_api =
        std::make_unique<coordinator::http::OpenAiApi>(std::move(api_options), std::move(backend));
    absl::StatusOr<std::unique_ptr<coordinator::http::OpenAiHttpServer>> http =
        coordinator::http::OpenAiHttpServer::Start(options.http_listen, *api_security,
                                                   serving.http_api.get());
    if (!http.ok()) return http.status();
    serving.http_server = *std::move(http);
    const std::string& host = options.http_listen;
    std::printf("http api on %s://%s:%d\n", serving.http_server->tls() ? "https" : "http",
                host.substr(0, host.rfind(':')).c_str(), serving.http_server->port());
  }
  if (!options.metrics_listen.empty()) {
    coordinator::CoordinatorServer* coordinator = serving.server.get();
    // /healthz: the process serves (a restart would not help a full disk); /readyz: it can take
    // work now, else why not.
    auto started = engine::MetricsHttpServer::Start(
        options.metrics_listen, coordinator->metrics().registry(), nullptr, [coordinator] {
          const std::string reason = coordinator->NotReadyReason();
          return engine::HealthzReply{reason.empty(), reason.empty() ? "ready\n" : reason + "\n"};
        });
    if (!started.ok()) return started.status();
    serving.metrics_server = *std::move(started);
    const std::string& host = options.metrics_listen;
    std::printf("metrics on %s:%d\n", host.substr(0, host.rfind(':')).c_str(),
                serving.metrics_server->port());
  }
  std::fflush(stdout);
  // Workers are probed after the API listens; report the plan (or why there is none) once made.
  serving.report_plan = std::thread([server = serving.server.get(), name = model.name,
                                     count = workers.size()] {
    absl::StatusOr<coordinator::ClusterPlan> plan = server->WaitForPlan();
    if (!plan.ok()) {
      std::fprintf(stderr, "flatfleet serve coordinator: %s\n",
                   std::string(plan.status().message()).c_str());
      return;
    }
    std::fprintf(stderr,
                 "flatfleet serve coordinator: model %s, %zu worker(s), tp=%u, %zu group(s)\n",
                 name.c_str(), count, plan->tp_size, plan->groups.size());
    for (const std::string& unused : plan->unused_workers) {
      std::fprintf(stderr, "flatfleet serve coordinator: worker %s left idle (not a full group)\n",
                   unused.c_str());
    }
  });
  return serving;
}

// Waits up to `seconds` for a stop signal; returns it, or 0 on timeout.
int WaitForStopSignal(const sigset_t& stop_signals, double seconds) {
  timespec timeout;
  timeout.tv_sec = static_cast<time_t>(seconds);
  timeout.tv_nsec = static_cast<long>((seconds - static_cast<double>(timeout.tv_sec)) * 1e9);
  while (true) {
    const int received = sigtimedwait(&stop_signals, nullptr, &timeout);
    if (received > 0) return received;
    if (errno == EAGAIN) return 0;
    // EINTR: another signal; wait again (a slightly longer wait is harmless).
  }
}

// The --worker list plus what --worker-dns resolves to.
absl::StatusOr<std::vector<std::string>> CurrentWorkers(
    const ServeCoordinatorOptions& options,
    const std::vector<coordinator::DnsWorkerTarget>& targets) {
  std::vector<std::string> workers = options.workers;
  if (targets.empty()) return workers;
  absl::StatusOr<std::vector<std::string>> discovered =
      coordinator::ResolveWorkers(targets, coordinator::ResolveHostAddresses);
  if (!discovered.ok()) return discovered.status();
  workers.insert(workers.end(), discovered->begin(), discovered->end());
  return workers;
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
  if (!options.chat_template.empty()) {
    // Checked here so a template that does not parse stops the start, not every chat request.
    absl::StatusOr<std::string> text = chat_template::ReadChatTemplateFile(options.chat_template);
    if (!text.ok()) return Fail(text.status());
    chat_template::ChatTemplateSource source;
    source.source = *text;
    source.origin = options.chat_template;
    absl::StatusOr<chat_template::ChatTemplate> parsed =
        chat_template::ChatTemplate::Create(std::move(source));
    if (!parsed.ok()) return Fail(parsed.status());
    model->chat_template = *std::move(text);
  }
  if (options.workers.empty() && options.worker_dns.empty()) {
    return Fail(absl::InvalidArgumentError("name workers with --worker or --worker-dns"));
  }
  std::vector<coordinator::DnsWorkerTarget> targets;
  for (const std::string& spec : options.worker_dns) {
    absl::StatusOr<coordinator::DnsWorkerTarget> target =
        coordinator::ParseDnsWorkerTarget(spec, options.workers_per_host);
    if (!target.ok()) return Fail(target.status());
    targets.push_back(*std::move(target));
  }
  WarnAboutPlaintextSecrets(options);

  // Pods appear in DNS one by one: wait for --min-workers before the first plan.
  absl::StatusOr<std::vector<std::string>> workers = CurrentWorkers(options, targets);
  std::string last_problem;
  while (!workers.ok() || workers->size() < static_cast<size_t>(options.min_workers)) {
    const std::string problem = workers.ok()
                                    ? absl::StrCat("found ", workers->size(), " of --min-workers ",
                                                   options.min_workers, " workers")
                                    : std::string(workers.status().message());
    if (problem != last_problem) {
      std::fprintf(stderr, "flatfleet serve coordinator: waiting for workers: %s\n",
                   problem.c_str());
      last_problem = problem;
    }
    if (WaitForStopSignal(stop_signals, 2) != 0) return 0;
    workers = CurrentWorkers(options, targets);
  }

  absl::StatusOr<Serving> serving = StartServing(options, *model, *workers);
  if (!serving.ok()) return Fail(serving.status());
  // A changed worker set re-plans the groups by restarting the coordinator in place: in-flight
  // requests return to pending (as on any coordinator restart) and loaded workers keep their
  // models. Two equal resolutions in a row are needed, so a rollout's steps do not each re-plan.
  coordinator::WorkerSetWatcher watcher(*workers, /*confirmations=*/2);
  const double interval = targets.empty() ? 3600 : options.worker_dns_interval_seconds;
  int received = 0;
  while ((received = WaitForStopSignal(stop_signals, interval)) == 0) {
    if (targets.empty()) continue;
    absl::StatusOr<std::vector<std::string>> resolved = CurrentWorkers(options, targets);
    if (!resolved.ok()) {
      // Said once per distinct problem, not on every resolution.
      const std::string problem(resolved.status().message());
      if (problem != last_problem) {
        std::fprintf(stderr, "flatfleet serve coordinator: keeping %zu workers: %s\n",
                     watcher.current().size(), problem.c_str());
      }
      last_problem = problem;
    } else if (resolved->size() < static_cast<size_t>(options.min_workers)) {
      resolved = absl::FailedPreconditionError("fewer workers than --min-workers");
    }
    if (resolved.ok()) last_problem.clear();
    const size_t before = watcher.current().size();
    std::optional<std::vector<std::string>> changed = watcher.Observe(resolved);
    if (!changed.has_value()) continue;
    std::fprintf(stderr,
                 "flatfleet serve coordinator: the worker set changed (%zu -> %zu workers); "
                 "re-planning\n",
                 before, changed->size());
    serving->Stop();
    serving = StartServing(options, *model, *changed);
    if (!serving.ok()) return Fail(serving.status());
  }
  std::fprintf(stderr, "flatfleet serve coordinator: %s received; stopping\n", strsignal(received));
  serving->Stop();
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
  cmd->add_option("--http-listen", options->http_listen,
                  "Also serve the OpenAI-compatible HTTP API (/v1/files, /v1/batches, "
                  "/v1/completions, /v1/chat/completions, /v1/models) on HOST:PORT, with the "
                  "same API tokens and TLS (HTTPS with --tls-cert); port 0 picks one "
                  "(docs/HTTP_API.md)");
  cmd->add_option("--http-files-dir", options->http_files_dir,
                  "Directory for files uploaded through the HTTP API (default: the --db path "
                  "with .files appended); each is at most --max-upload-bytes");
  cmd->add_option("--db", options->db, "SQLite file holding jobs and results")->required();
  cmd->add_option("--worker", options->workers, "Worker address HOST:PORT (repeat for each)");
  cmd->add_option("--worker-dns", options->worker_dns,
                  "Discover workers: HOST:PORT whose HOST (e.g. a headless Service) resolves to "
                  "one address per worker pod; re-resolved every --worker-dns-interval, and a "
                  "changed set re-plans the groups (repeatable; adds to --worker)");
  cmd->add_option("--workers-per-host", options->workers_per_host,
                  "Worker processes behind each --worker-dns address, on PORT, PORT+1, ... "
                  "(one per GPU of a pod)")
      ->capture_default_str()
      ->check(CLI::Range(1, 64));
  cmd->add_option("--worker-dns-interval", options->worker_dns_interval_seconds,
                  "Seconds between --worker-dns resolutions")
      ->capture_default_str()
      ->check(CLI::Range(1.0, 3600.0));
  cmd->add_option("--min-workers", options->min_workers,
                  "Wait until this many workers are known before planning (and keep the "
                  "current plan while fewer resolve)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--model", options->model, "NAME=DIR or NAME=builtin:demo")->required();
  cmd->add_option("--chat-template", options->chat_template,
                  "Jinja chat template FILE for /v1/chat/completions requests, in place of the "
                  "model's own (chat_template.jinja or tokenizer_config.json); without either, "
                  "chat requests fail");
  cmd->add_option("--input-dir", options->input_dirs,
                  "Directory whose files CreateBatch may name as input_path (repeatable)");
  cmd->add_option("--worker-memory-gib", options->worker_memory_gib,
                  "Device memory per worker for planning tensor parallelism (0: ask each "
                  "worker's Health)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--plan-kv-cache-tokens", options->plan_kv_cache_tokens,
                  "KV-cache positions every rank must hold beside its weights when the planner "
                  "chooses tp (docs/TENSOR_PARALLEL.md, \"Planning\")")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--plan-memory-fraction", options->plan_memory_fraction,
                  "Share of each worker's reported memory a rank may fill when the planner "
                  "chooses tp (match the workers' --gpu-memory-fraction)")
      ->capture_default_str()
      ->check(CLI::Range(0.01, 1.0));
  cmd->add_option("--tp", options->tp,
                  "Tensor-parallel ranks per worker group (0: the planner chooses from what a "
                  "rank of the model holds on its device and the workers' memory)")
      ->capture_default_str()
      ->check(CLI::Range(0, 64));
  cmd->add_option("--all-reduce-compression", options->all_reduce_compression,
                  "Tensor-parallel all-reduces: int8 (per-block INT8, less traffic; on GPU "
                  "groups it only allows INT8 where the measured table chose it) or none "
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
