// `flatfleet generate`: batched text generation with the float32 CPU engine.
#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_join.h"
#include "common/tokenizer/tokenizer.h"
#include "kernels/cpu/cpu_backend.h"
#include "tools/commands.h"
#include "tools/device_flags.h"
#include "worker/generate/generator.h"
#include "worker/model/demo_model.h"
#include "worker/model/llama_model.h"
#include "worker/quantized/runnable_model.h"

namespace flatfleet::tools {
namespace {

struct GenerateOptions {
  std::string model_dir;
  std::string tokenizer_path;
  std::vector<std::string> prompts;
  std::string prompts_file;
  engine::DeviceOptions device;
  int64_t max_tokens = 64;
  float temperature = 0.0f;
  float top_p = 1.0f;
  int64_t top_k = 0;
  uint64_t seed = 0;
  std::vector<std::string> stop;
  bool ignore_eos = false;
  bool print_ids = false;
};

int Fail(const std::string& message) {
  std::fprintf(stderr, "flatfleet generate: %s\n", message.c_str());
  return 1;
}

int RunGenerate(const GenerateOptions& options) {
  std::vector<std::string> prompts = options.prompts;
  if (!options.prompts_file.empty()) {
    std::ifstream in(options.prompts_file);
    if (!in) return Fail("cannot read prompts file " + options.prompts_file);
    for (std::string line; std::getline(in, line);) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (!line.empty()) prompts.push_back(line);
    }
  }
  if (prompts.empty()) return Fail("no prompts: give --prompt or --prompts-file");

  absl::StatusOr<engine::SelectedBackend> selected = tools::OpenDevice(options.device, "generate");
  if (!selected.ok()) return Fail(std::string(selected.status().message()));
  kernels::Backend& backend = *selected->backend;
  quant::RunnableModel checkpoint;  // holds a quantized model's backend
  std::unique_ptr<engine::LlamaModel> model;
  std::unique_ptr<tokenizer::Tokenizer> tok;
  if (options.model_dir.empty()) {
    std::fprintf(stderr,
                 "flatfleet generate: no --model given; using the built-in demo model with "
                 "random weights and a byte tokenizer (its output is gibberish by design)\n");
    auto demo = engine::MakeDemoModel(backend);
    if (!demo.ok()) return Fail(std::string(demo.status().message()));
    model = *std::move(demo);
    tok = tokenizer::MakeByteTokenizer();
  } else {
    auto loaded = quant::LoadRunnableModel(options.model_dir, {}, &backend);
    if (!loaded.ok()) return Fail(std::string(loaded.status().message()));
    checkpoint = *std::move(loaded);
    model = std::move(checkpoint.model);
    if (checkpoint.quantized()) {
      std::fprintf(stderr, "flatfleet generate: %s model\n", checkpoint.Description().c_str());
    }
    const std::string tokenizer_path =
        options.tokenizer_path.empty() ? options.model_dir : options.tokenizer_path;
    auto loaded_tok = tokenizer::LoadTokenizer(tokenizer_path);
    if (loaded_tok.ok()) {
      tok = *std::move(loaded_tok);
    } else if (options.tokenizer_path.empty() &&
               model->config().vocab_size >= tokenizer::MakeByteTokenizer()->vocab_size()) {
      // Test checkpoints often ship without a tokenizer; bytes are still valid ids for them.
      std::fprintf(stderr,
                   "flatfleet generate: no tokenizer in %s (%s); using the byte tokenizer\n",
                   options.model_dir.c_str(), std::string(loaded_tok.status().message()).c_str());
      tok = tokenizer::MakeByteTokenizer();
    } else {
      return Fail(std::string(loaded_tok.status().message()));
    }
  }
  if (tok->vocab_size() > model->config().vocab_size) {
    std::fprintf(stderr, "flatfleet generate: warning: tokenizer has %lld ids, model only %lld\n",
                 static_cast<long long>(tok->vocab_size()),
                 static_cast<long long>(model->config().vocab_size));
  }

  std::vector<engine::GenerationRequest> requests;
  for (const std::string& prompt : prompts) {
    auto ids = tok->Encode(prompt, /*add_special_tokens=*/true);
    if (!ids.ok()) return Fail(std::string(ids.status().message()));
    engine::GenerationRequest request;
    request.prompt = *std::move(ids);
    request.params.temperature = options.temperature;
    request.params.top_p = options.top_p;
    request.params.top_k = options.top_k;
    request.params.seed = options.seed;
    request.params.max_tokens = options.max_tokens;
    request.params.ignore_eos = options.ignore_eos;
    request.params.stop_strings = options.stop;
    requests.push_back(std::move(request));
  }

  engine::Generator generator(*model, tok.get());
  engine::GenerationStats stats;
  auto results = generator.Generate(requests, &stats);
  if (!results.ok()) return Fail(std::string(results.status().message()));

  for (size_t i = 0; i < results->size(); ++i) {
    const engine::GenerationResult& result = (*results)[i];
    if (results->size() > 1) {
      std::printf("### completion %zu (finish: %s, %lld tokens)\n", i,
                  std::string(engine::FinishReasonName(result.finish_reason)).c_str(),
                  static_cast<long long>(result.completion_tokens));
    }
    std::printf("%s\n", result.text.c_str());
    if (options.print_ids) std::printf("ids: %s\n", absl::StrJoin(result.tokens, " ").c_str());
    if (results->size() == 1) {
      std::fprintf(stderr, "finish: %s, prompt tokens %lld, completion tokens %lld\n",
                   std::string(engine::FinishReasonName(result.finish_reason)).c_str(),
                   static_cast<long long>(result.prompt_tokens),
                   static_cast<long long>(result.completion_tokens));
    }
  }
  auto rate = [](int64_t tokens, double seconds) { return seconds > 0 ? tokens / seconds : 0.0; };
  std::fprintf(stderr,
               "batch %zu: prefill %lld tokens in %.3f s (%.1f tokens/s); decode %lld tokens in "
               "%.3f s (%.1f tokens/s)\n",
               requests.size(), static_cast<long long>(stats.prefill_tokens), stats.prefill_seconds,
               rate(stats.prefill_tokens, stats.prefill_seconds),
               static_cast<long long>(stats.decode_tokens), stats.decode_seconds,
               rate(stats.decode_tokens, stats.decode_seconds));
  return 0;
}

}  // namespace

CommandRunner RegisterGenerateCommand(CLI::App& app) {
  auto options = std::make_shared<GenerateOptions>();
  CLI::App* cmd = app.add_subcommand(
      "generate",
      "Generate completions with the CPU engine (float32, or the integer reference kernels for a "
      "quantized checkpoint). Without --model, a built-in demo model "
      "with random weights is used. Prompts run as one batch; completions go to stdout, "
      "throughput to stderr.");
  cmd->add_option("--model", options->model_dir,
                  "Checkpoint directory (config.json + safetensors, float or quantized); omit for "
                  "the demo model");
  cmd->add_option("--tokenizer", options->tokenizer_path,
                  "tokenizer.json / tokenizer.model or its directory (default: the model's)");
  cmd->add_option("--prompt", options->prompts, "Prompt text (repeatable)");
  tools::AddDeviceFlags(cmd, &options->device);
  cmd->add_option("--prompts-file", options->prompts_file, "File with one prompt per line")
      ->check(CLI::ExistingFile);
  cmd->add_option("--max-tokens", options->max_tokens, "Most tokens to generate per prompt")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--temperature", options->temperature, "Sampling temperature; 0 = greedy")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--top-p", options->top_p, "Nucleus sampling mass; 1 = off")
      ->capture_default_str()
      ->check(CLI::Range(0.0f, 1.0f));
  cmd->add_option("--top-k", options->top_k, "Sample among the k most likely tokens; 0 = off")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--seed", options->seed,
                  "Random seed of every request (same seed, same prompt: same output)")
      ->capture_default_str();
  cmd->add_option("--stop", options->stop,
                  "Stop string (repeatable); the completion is cut before it");
  cmd->add_flag("--ignore-eos", options->ignore_eos,
                "Keep generating past end-of-sequence tokens (for benchmarks)");
  cmd->add_flag("--print-ids", options->print_ids, "Also print the generated token ids");
  return [options] { return RunGenerate(*options); };
}

}  // namespace flatfleet::tools
