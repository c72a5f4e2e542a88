// `flatfleet bench`: offline throughput of the real continuous-batching engine on a model of a
// named architecture (weights generated from a seed, on the device for GPUs) or a checkpoint
// directory, float or quantized (`flatfleet quantize`: on the GPU's integer GEMMs, or the CPU's
// integer reference). Submits R requests of I random prompt tokens and O output tokens
// (ignore_eos), steps the engine until all are done with a progress line, and reports input, output
// and total tokens/s, TTFT and inter-token-latency percentiles, weight and KV memory, and (on the
// GPU) the share of device time in GEMMs, attention and the rest from a short timed run at the end.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/model_config.h"
#include "common/status_macros.h"
#include "tools/architecture_shapes.h"
#include "tools/commands.h"
#include "tools/device_flags.h"
#include "worker/batching/continuous_batcher.h"
#include "worker/model/llama_model.h"
#include "worker/model/seeded_weight_source.h"
#include "worker/quantized/runnable_model.h"

namespace flatfleet::tools {
namespace {

using Clock = std::chrono::steady_clock;

struct BenchOptions {
  std::string arch = "tiny";
  bool random_weights = true;
  std::string recipe = "bf16";
  int64_t requests = 16;
  int64_t input_len = 32;
  int64_t output_len = 16;
  int64_t max_batch = 256;
  int64_t max_step_tokens = 8192;
  uint64_t seed = 1;
  bool warmup = true;
  engine::DeviceOptions device;
};

double Percentile(std::vector<double> values, double p) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const size_t index = static_cast<size_t>(std::min<double>(values.size() - 1, p * values.size()));
  return values[index];
}

std::string Gigabytes(double bytes) { return absl::StrFormat("%.2f GB", bytes / 1e9); }

absl::Status RunBench(const BenchOptions& options) {
  // Random weights in the recipe's integer format (the kernels' plain W8A8 / W4A8 forms; the
  // other recipes' transforms need the low-bit kernel work).
  std::optional<kernels::RandomQuantizedFormat> format;
  if (options.recipe == "w8a8") {
    format = kernels::RandomQuantizedFormat{.weight_bits = 8, .group_size = 0};
  } else if (options.recipe == "w4a8") {
    format = kernels::RandomQuantizedFormat{.weight_bits = 4, .group_size = 128};
  } else if (options.recipe != "bf16") {
    return absl::InvalidArgumentError(absl::StrFormat(
        "--recipe %s: bench runs bf16, w8a8 (per-channel INT8 weights) or w4a8 (INT4 weights in "
        "groups of 128); every recipe runs from a quantized checkpoint (--arch DIR)",
        options.recipe));
  }
  if (format.has_value() && std::filesystem::is_directory(options.arch)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "--recipe %s applies to random weights (--arch NAME); a checkpoint directory runs as "
        "stored (quantize it first)",
        options.recipe));
  }
  if (options.requests <= 0 || options.input_len <= 0 || options.output_len <= 0 ||
      options.max_batch <= 0) {
    return absl::InvalidArgumentError(
        "--requests, --input-len, --output-len and --max-batch must be positive");
  }
  FF_ASSIGN_OR_RETURN(engine::SelectedBackend selected, OpenDevice(options.device, "bench"));
  kernels::Backend& backend = *selected.backend;
  const auto load_start = Clock::now();
  quant::RunnableModel checkpoint;  // holds a quantized model's CPU backend; outlives `model`
  std::unique_ptr<engine::LlamaModel> model;
  std::string what;
  if (std::filesystem::is_directory(options.arch)) {
    engine::ModelOptions model_options;
    model_options.load_progress = LoadProgressLine("bench");
    FF_ASSIGN_OR_RETURN(checkpoint,
                        quant::LoadRunnableModel(options.arch, model_options, &backend));
    model = std::move(checkpoint.model);
    what = absl::StrCat(options.arch, " (", checkpoint.Description(), ")");
  } else {
    absl::StatusOr<ModelConfig> shape = ArchitectureShape(options.arch);
    if (!shape.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(shape.status().message(), ", or a checkpoint directory"));
    }
    ModelConfig config = *std::move(shape);
    config.max_position_embeddings = std::max<int64_t>(config.max_position_embeddings,
                                                       options.input_len + options.output_len + 1);
    std::fprintf(stderr, "flatfleet bench: generating %s weights (seed %llu)...\n",
                 options.arch.c_str(), static_cast<unsigned long long>(options.seed));
    engine::SeededWeightSource source(options.seed, 0.02f, format);
    engine::ModelOptions model_options;
    model_options.load_progress = LoadProgressLine("bench");
    FF_ASSIGN_OR_RETURN(model, engine::BuildLlamaModel(config, source, backend, model_options));
    what = absl::StrFormat("%s %s (random weights, seed %llu)", options.arch, options.recipe,
                           static_cast<unsigned long long>(options.seed));
  }
  const double load_seconds = std::chrono::duration<double>(Clock::now() - load_start).count();
  const ModelConfig& config = model->config();
  int64_t free_before = 0, total = 0;
  const bool device_memory = backend.DeviceMemory(&free_before, &total);

  engine::ContinuousBatcherOptions batcher;
  batcher.max_running_sequences = options.max_batch;
  batcher.max_step_tokens = options.max_step_tokens;
  const int64_t per_sequence = options.input_len + options.output_len;
  // The GPU sizes its pool from free memory; the CPU gets what the workload needs at most.
  batcher.kv_cache_blocks =
      selected.cuda ? 0
                    : std::min(options.requests, options.max_batch) *
                          ((per_sequence + batcher.kv_block_size - 1) / batcher.kv_block_size);
  FF_ASSIGN_OR_RETURN(std::unique_ptr<engine::ContinuousBatcher> engine,
                      engine::ContinuousBatcher::Create(*model, nullptr, batcher));
  int64_t free_after = 0;
  backend.DeviceMemory(&free_after, &total);
  const engine::EngineStats initial = engine->Stats();
  const double kv_bytes =
      static_cast<double>(initial.kv_cache_total_blocks) *
      engine::PagedKvCache::BytesPerBlock({.num_layers = config.num_hidden_layers,
                                           .row_size = model->kv_row_size(),
                                           .block_size = batcher.kv_block_size,
                                           .dtype = selected.cuda ? engine::KvCacheDtype::kBFloat16
                                                                  : engine::KvCacheDtype::kFloat32,
                                           .head_dim = config.head_dim});
  std::printf("model: %s on %s, loaded in %.1f s\n", what.c_str(), selected.description.c_str(),
              load_seconds);
  if (device_memory) {
    std::printf(
        "device memory: %s used by weights and workspace, KV cache %s (%lld blocks of %lld "
        "positions), %s total\n",
        Gigabytes(static_cast<double>(total - free_before)).c_str(), Gigabytes(kv_bytes).c_str(),
        static_cast<long long>(initial.kv_cache_total_blocks),
        static_cast<long long>(batcher.kv_block_size), Gigabytes(total).c_str());
  }
  std::printf(
      "workload: %lld requests of %lld input + %lld output tokens, max batch %lld, "
      "%lld tokens per step\n",
      static_cast<long long>(options.requests), static_cast<long long>(options.input_len),
      static_cast<long long>(options.output_len), static_cast<long long>(options.max_batch),
      static_cast<long long>(options.max_step_tokens));
  std::fflush(stdout);

  std::mt19937_64 rng(options.seed);
  std::uniform_int_distribution<int32_t> token(0, static_cast<int32_t>(config.vocab_size - 1));
  // Warm-up, not timed: the first step of each shape chooses GEMM algorithms and captures the
  // decode graph of its batch bucket.
  if (options.warmup) {
    for (int64_t r = 0; r < std::min(options.requests, options.max_batch); ++r) {
      engine::EngineRequest request;
      request.id = absl::StrFormat("warmup%lld", static_cast<long long>(r));
      request.prompt.resize(options.input_len);
      for (int32_t& t : request.prompt) t = token(rng);
      request.params.max_tokens = std::min<int64_t>(options.output_len, 4);
      request.params.ignore_eos = true;
      FF_RETURN_IF_ERROR(engine->Submit(std::move(request)));
    }
    while (!engine->Idle()) engine->Step();
  }
  const engine::EngineStats before = engine->Stats();
  const auto start = Clock::now();
  for (int64_t r = 0; r < options.requests; ++r) {
    engine::EngineRequest request;
    request.id = absl::StrFormat("r%lld", static_cast<long long>(r));
    request.prompt.resize(options.input_len);
    for (int32_t& t : request.prompt) t = token(rng);
    request.params.max_tokens = options.output_len;
    request.params.ignore_eos = true;
    FF_RETURN_IF_ERROR(engine->Submit(std::move(request)));
  }
  std::vector<double> ttft, itl;
  int64_t done = 0, failed = 0, output_tokens = 0;
  auto last_report = Clock::now();
  while (!engine->Idle()) {
    for (const engine::EngineResult& result : engine->Step()) {
      ++done;
      if (!result.status.ok()) {
        if (++failed == 1) {
          std::fprintf(stderr, "flatfleet bench: request %s failed: %s\n", result.id.c_str(),
                       result.status.ToString().c_str());
        }
        continue;
      }
      output_tokens += result.result.completion_tokens;
      ttft.push_back(result.time_to_first_token_seconds);
      if (result.result.completion_tokens > 1) {
        itl.push_back((result.total_seconds - result.time_to_first_token_seconds) /
                      static_cast<double>(result.result.completion_tokens - 1));
      }
    }
    if (Clock::now() - last_report > std::chrono::seconds(2)) {
      last_report = Clock::now();
      const engine::EngineStats stats = engine->Stats();
      const double elapsed = std::chrono::duration<double>(last_report - start).count();
      std::fprintf(
          stderr, "\rbench: %lld/%lld requests done, %lld running, %.0f output tok/s   ",
          static_cast<long long>(done), static_cast<long long>(options.requests),
          static_cast<long long>(stats.running_requests),
          static_cast<double>(stats.generated_tokens_total - before.generated_tokens_total) /
              elapsed);
    }
  }
  const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  std::fprintf(stderr, "\n");
  const engine::EngineStats stats = engine->Stats();
  const double input_tokens =
      static_cast<double>(stats.prompt_tokens_total - before.prompt_tokens_total);
  std::printf("elapsed: %.2f s, %lld steps, %lld requests failed\n", elapsed,
              static_cast<long long>(stats.steps_total - before.steps_total),
              static_cast<long long>(failed));
  std::printf("throughput: input %.0f tok/s, output %.0f tok/s, total %.0f tok/s\n",
              input_tokens / elapsed, static_cast<double>(output_tokens) / elapsed,
              (input_tokens + static_cast<double>(output_tokens)) / elapsed);
  std::printf("TTFT: p50 %.1f ms, p90 %.1f ms, p99 %.1f ms\n", 1e3 * Percentile(ttft, 0.5),
              1e3 * Percentile(ttft, 0.9), 1e3 * Percentile(ttft, 0.99));
  std::printf("ITL: p50 %.2f ms, p90 %.2f ms, p99 %.2f ms\n", 1e3 * Percentile(itl, 0.5),
              1e3 * Percentile(itl, 0.9), 1e3 * Percentile(itl, 0.99));

  // Where device time goes: a short timed run (events per op) of max-batch decode steps.
  if (selected.cuda) {
    kernels::ExecutionContext& context = model->execution_context();
    const int64_t batch = std::min(options.max_batch, options.requests);
    for (int64_t r = 0; r < batch; ++r) {
      engine::EngineRequest request;
      request.id = absl::StrFormat("profile%lld", static_cast<long long>(r));
      request.prompt.resize(options.input_len);
      for (int32_t& t : request.prompt) t = token(rng);
      request.params.max_tokens = std::min<int64_t>(options.output_len, 32);
      request.params.ignore_eos = true;
      FF_RETURN_IF_ERROR(engine->Submit(std::move(request)));
    }
    context.EnableOpTiming(true);
    context.TakeOpTimes();
    while (!engine->Idle()) engine->Step();
    std::map<std::string, double> times = context.TakeOpTimes();
    context.EnableOpTiming(false);
    double sum = 0;
    for (const auto& [category, seconds] : times) sum += seconds;
    std::string shares;
    for (const auto& [category, seconds] : times) {
      shares += absl::StrFormat(" %s %.1f%%", category, 100.0 * seconds / sum);
    }
    std::printf("device time by op (%lld requests, prefill + up to 32 decode steps):%s\n",
                static_cast<long long>(batch), shares.c_str());
  }
  return failed == 0 ? absl::OkStatus()
                     : absl::InternalError(absl::StrFormat("%lld requests failed", failed));
}

}  // namespace

CommandRunner RegisterBenchCommand(CLI::App& app) {
  auto options = std::make_shared<BenchOptions>();
  CLI::App* cmd = app.add_subcommand(
      "bench", "Offline throughput of the continuous-batching engine on a real model shape");
  cmd->add_option(
         "--arch", options->arch,
         "llama-3-8b, llama-3-70b, mixtral-8x7b, tiny, or a checkpoint directory (float or "
         "quantized)")
      ->capture_default_str();
  cmd->add_flag("--random-weights", options->random_weights,
                "Weights from --seed (the default for named architectures)");
  cmd->add_option("--recipe", options->recipe,
                  "Linear layers of random weights: bf16, w8a8 or w4a8 (GPU)")
      ->capture_default_str();
  cmd->add_option("--requests", options->requests, "Requests")->capture_default_str();
  cmd->add_option("--input-len", options->input_len, "Prompt tokens per request")
      ->capture_default_str();
  cmd->add_option("--output-len", options->output_len, "Generated tokens per request")
      ->capture_default_str();
  cmd->add_option("--max-batch", options->max_batch, "Most running sequences")
      ->capture_default_str();
  cmd->add_option("--max-step-tokens", options->max_step_tokens,
                  "Most tokens in one forward pass (chunked prefill)")
      ->capture_default_str();
  cmd->add_option("--seed", options->seed, "Weights and prompts")->capture_default_str();
  cmd->add_flag("!--no-warmup", options->warmup,
                "Skip the untimed warm-up pass (algorithm choice, graph capture)");
  AddDeviceFlags(cmd, &options->device);
  return [options] {
    const absl::Status status = RunBench(*options);
    if (!status.ok()) {
      std::fprintf(stderr, "flatfleet bench: %s\n", std::string(status.message()).c_str());
      return 1;
    }
    return 0;
  };
}

}  // namespace flatfleet::tools
