// `flatfleet serve worker`: one worker process (one GPU or CPU rank) serving WorkerService over
// gRPC, with Prometheus metrics and /healthz over HTTP. SIGTERM or SIGINT drains it: intake
// stops, running work finishes, then the process exits 0.
#include <pthread.h>
#include <signal.h>

#include <cstdio>
#include <memory>
#include <string>

#include "absl/time/time.h"
#include "tools/commands.h"
#include "tools/device_flags.h"
#include "tools/security_options.h"
#include "worker/serving/continuous_batcher_factory.h"
#include "worker/serving/generator_engine.h"
#include "worker/serving/model_loader.h"
#include "worker/serving/worker_process.h"

namespace flatfleet::tools {
namespace {

struct ServeWorkerOptions {
  std::string listen = "127.0.0.1:0";
  std::string metrics_listen;
  std::string model;
  std::string engine = "continuous";
  std::string kv_cache_dtype = "float32";
  int64_t default_max_tokens = 16;
  double drain_timeout_seconds = 600;
  int max_message_bytes = 16 << 20;
  security::ClusterFlags cluster_security;
  engine::DeviceOptions device;
};

int RunServeWorker(const ServeWorkerOptions& options) {
  // Block the stop signals before any server thread exists, so every thread inherits the mask
  // and only sigwait() below sees them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  engine::WorkerProcessOptions process_options;
  process_options.listen_address = options.listen;
  process_options.metrics_listen_address = options.metrics_listen;
  process_options.max_message_bytes = options.max_message_bytes;
  absl::StatusOr<security::ServerSecurity> server_security =
      security::LoadClusterServerSecurity(options.cluster_security);
  if (!server_security.ok()) {
    std::fprintf(stderr, "flatfleet serve worker: %s\n",
                 std::string(server_security.status().message()).c_str());
    return 1;
  }
  process_options.security = *std::move(server_security);
  if (!options.cluster_security.secret_file.empty() && options.cluster_security.tls_ca.empty() &&
      !security::IsLoopbackAddress(options.listen)) {
    std::fprintf(stderr,
                 "flatfleet serve worker: warning: the cluster secret travels in plaintext on "
                 "%s; add --cluster-tls-cert/-key/-ca\n",
                 options.listen.c_str());
  }
  absl::StatusOr<engine::SelectedBackend> selected =
      tools::OpenDevice(options.device, "serve worker");
  if (!selected.ok()) {
    std::fprintf(stderr, "flatfleet serve worker: %s\n",
                 std::string(selected.status().message()).c_str());
    return 1;
  }
  engine::CpuModelLoaderOptions loader_options;
  loader_options.backend = selected->backend;
  loader_options.load_progress = LoadProgressLine("serve worker");
  loader_options.cuda_device = options.device.gpu;  // an NCCL group's rank joins on it
  process_options.service.model_loader = engine::CpuModelLoader(loader_options);
  if (selected->cuda) process_options.service.device_backend = selected->backend;
  engine::ContinuousBatcherOptions batcher_options;
  batcher_options.kv_cache_dtype = options.kv_cache_dtype == "int8" ? engine::KvCacheDtype::kInt8
                                   : options.kv_cache_dtype == "bf16"
                                       ? engine::KvCacheDtype::kBFloat16
                                       : engine::KvCacheDtype::kFloat32;
  // On a GPU the KV pool takes the device memory the weights and workspace leave.
  if (selected->cuda) batcher_options.kv_cache_blocks = 0;
  // Tensor-parallel groups always run the continuous batcher; every rank of a group must be
  // started with the same KV cache settings (followers mirror rank 0's cache).
  process_options.service.group_batcher_options = batcher_options;
  // "generator" keeps the batch-at-once adapter as a fallback for comparisons.
  process_options.service.engine_factory = options.engine == "generator"
                                               ? engine::GeneratorEngineFactory()
                                               : engine::ContinuousBatcherFactory(batcher_options);
  process_options.service.sampling_defaults.max_tokens = options.default_max_tokens;
  process_options.service.drain_timeout = absl::Seconds(options.drain_timeout_seconds);
  auto process = engine::WorkerProcess::Start(std::move(process_options));
  if (!process.ok()) {
    std::fprintf(stderr, "flatfleet serve worker: %s\n",
                 std::string(process.status().message()).c_str());
    return 1;
  }
  // First line of stdout: what tests and scripts wait for when they asked for port 0.
  std::printf("listening on %s\n", (*process)->address().c_str());
  if ((*process)->metrics_port() > 0) {
    const std::string& host = options.metrics_listen;
    std::printf("metrics on %s:%d\n", host.substr(0, host.rfind(':')).c_str(),
                (*process)->metrics_port());
  }
  std::fflush(stdout);

  if (!options.model.empty()) {
    v1::LoadShardRequest request;
    request.set_model_path(options.model);
    request.set_tp_size(1);
    v1::LoadShardResponse response;
    absl::Status loaded = (*process)->service().Load(request, &response);
    if (!loaded.ok()) {
      std::fprintf(stderr, "flatfleet serve worker: %s\n", std::string(loaded.message()).c_str());
      (*process)->Shutdown(absl::ZeroDuration(), absl::Seconds(1)).IgnoreError();
      return 1;
    }
    std::fprintf(stderr, "flatfleet serve worker: loaded %s (vocabulary %u, context %u)\n",
                 options.model.c_str(), response.vocab_size(), response.max_context_tokens());
  }

  int received = 0;
  sigwait(&stop_signals, &received);
  std::fprintf(stderr, "flatfleet serve worker: %s received; draining\n", strsignal(received));
  auto drained =
      (*process)->Shutdown(absl::Seconds(options.drain_timeout_seconds), absl::Seconds(5));
  if (!drained.ok()) {
    std::fprintf(stderr, "flatfleet serve worker: drain incomplete: %s\n",
                 std::string(drained.status().message()).c_str());
    return 1;
  }
  std::fprintf(stderr, "flatfleet serve worker: drained (%u finished, %u cancelled)\n",
               drained->finished(), drained->cancelled());
  return 0;
}

}  // namespace

CommandRunner RegisterServeWorkerCommand(CLI::App& serve) {
  auto options = std::make_shared<ServeWorkerOptions>();
  CLI::App* cmd = serve.add_subcommand(
      "worker",
      "Run one worker (a CPU or GPU rank) serving WorkerService over gRPC. Prints "
      "'listening on HOST:PORT' as its first line; SIGTERM/SIGINT drain it, then it exits.");
  tools::AddDeviceFlags(cmd, &options->device);
  cmd->add_option("--listen", options->listen, "gRPC address HOST:PORT; port 0 picks a free one")
      ->capture_default_str();
  cmd->add_option("--metrics-listen", options->metrics_listen,
                  "HTTP address HOST:PORT for /metrics and /healthz (port 0 picks one); "
                  "none when omitted");
  cmd->add_option("--model", options->model,
                  "Load this model at start: a checkpoint directory or builtin:demo (otherwise "
                  "the coordinator's LoadShard chooses)");
  cmd->add_option("--engine", options->engine,
                  "continuous (continuous batching) or generator (batch-at-once, for comparison)")
      ->capture_default_str()
      ->check(CLI::IsMember({"continuous", "generator"}));
  cmd->add_option("--kv-cache-dtype", options->kv_cache_dtype,
                  "KV cache storage: float32 (bf16 on cuda), bf16 (cuda), or int8 (per-head FP16 "
                  "scales, ~3.9x the positions per byte; continuous engine only)")
      ->capture_default_str()
      ->check(CLI::IsMember({"float32", "bf16", "int8"}));
  cmd->add_option("--default-max-tokens", options->default_max_tokens,
                  "max_tokens of requests that set none")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--drain-timeout", options->drain_timeout_seconds,
                  "Seconds a drain waits for running work before cancelling it")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--max-message-bytes", options->max_message_bytes,
                  "Largest gRPC message accepted or sent")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  AddClusterOptions(cmd, &options->cluster_security, /*coordinator_side=*/false);
  return [options] { return RunServeWorker(*options); };
}

}  // namespace flatfleet::tools
