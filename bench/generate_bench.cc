// Prefill and decode throughput of the float32 engine on the llama-tiny fixture, by batch size.
#include <cstdlib>
#include <filesystem>
#include <random>
#include <vector>

#include "benchmark/benchmark.h"
#include "kernels/cpu/cpu_backend.h"
#include "worker/generate/generator.h"
#include "worker/model/llama_model.h"

namespace flatfleet::engine {
namespace {

const LlamaModel& TinyLlama() {
  static std::unique_ptr<LlamaModel> model = [] {
    const char* env = std::getenv("FLATFLEET_SHARED_DIR");
    const std::filesystem::path dir =
        std::filesystem::path(env ? env : FLATFLEET_SHARED_DIR) / "fixtures" / "llama-tiny";
    auto loaded = LoadLlamaModel(dir, kernels::cpu::DefaultCpuBackend());
    if (!loaded.ok()) {
      std::fprintf(stderr, "%s\n", std::string(loaded.status().message()).c_str());
      std::exit(1);
    }
    return *std::move(loaded);
  }();
  return *model;
}

// range(0) = batch, range(1) = prompt tokens, range(2) = generated tokens per request.
void BM_Generate(benchmark::State& state) {
  const LlamaModel& model = TinyLlama();
  const int64_t batch = state.range(0), prompt = state.range(1), generated = state.range(2);
  std::mt19937 rng(3);
  std::uniform_int_distribution<int32_t> token(0, model.config().vocab_size - 1);
  std::vector<GenerationRequest> requests(batch);
  for (auto& request : requests) {
    for (int64_t i = 0; i < prompt; ++i) request.prompt.push_back(token(rng));
    request.params.max_tokens = generated;
    request.params.ignore_eos = true;
  }
  Generator generator(model, nullptr);
  GenerationStats stats;
  for (auto _ : state) {
    auto results = generator.Generate(requests, &stats);
    if (!results.ok()) state.SkipWithError("generation failed");
  }
  state.counters["prefill tok/s"] = stats.prefill_tokens / stats.prefill_seconds;
  state.counters["decode tok/s"] = stats.decode_tokens / stats.decode_seconds;
}

BENCHMARK(BM_Generate)
    ->ArgNames({"batch", "prompt", "gen"})
    ->Args({1, 128, 64})
    ->Args({8, 128, 64})
    ->Args({1, 512, 16})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace flatfleet::engine

BENCHMARK_MAIN();
