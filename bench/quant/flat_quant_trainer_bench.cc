// FlatQuant's trainer (quant/flat_quant_trainer.h) at realistic linear shapes: the full objective's
// loss (what judges the initial and final transforms; the bulk of a layer's time at 70B shapes),
// one training step (Evaluate with its gradient over a 64-output-channel subset, as TrainFlatQuant
// takes them), one whole TrainFlatQuant with the recipe's options and a whole Llama-shaped layer's
// worth of them, each on one thread and on every hardware thread (the results are the same).
// Times are wall clock; the CPU column is the whole process's (all threads). bench/RESULTS.md has
// the numbers and the command.
#include <algorithm>
#include <cstdint>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "bench/normal_values.h"
#include "benchmark/benchmark.h"
#include "common/thread_pool.h"
#include "quant/flat_quant_trainer.h"

namespace flatfleet::quant {
namespace {

// Seeded inputs with a few outlier channels (what FlatQuant exists for) and small weights.
struct Layer {
  std::vector<float> x, w;
  FlatQuantProblem problem;
};

Layer MakeLayer(int64_t in, int64_t out, int64_t rows) {
  std::mt19937 rng(1);
  Layer layer;
  layer.x = bench::NormalValues(rows * in, rng);
  layer.w = bench::NormalValues(out * in, rng);
  for (float& v : layer.w) v *= 0.02f;
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t k = 5; k < in; k += in / 8) layer.x[r * in + k] *= 40.0f;
  }
  layer.problem = {.inputs = layer.x,
                   .rows = rows,
                   .weight = layer.w,
                   .out_features = out,
                   .in_features = in,
                   .activation_bits = 4,
                   .weight_bits = 4};
  return layer;
}

void SetShapeCounters(benchmark::State& state, int64_t in, int64_t out, int64_t rows) {
  // The output-error product's multiply-adds, to compare shapes.
  state.counters["GMAC"] = 1e-9 * static_cast<double>(rows) * out * in;
}

void BM_FlatQuantLoss(benchmark::State& state) {
  const int64_t in = state.range(0), out = state.range(1), rows = state.range(2);
  const Layer layer = MakeLayer(in, out, rows);
  ThreadPool pool(static_cast<int>(state.range(3)));
  auto objective = FlatQuantObjective::Create(layer.problem, &pool);
  if (!objective.ok()) return state.SkipWithError("objective");
  const FlatQuantParams params = InitialFlatQuantParams(layer.problem, {});
  for (auto _ : state) {
    auto loss = objective->Loss(params);
    if (!loss.ok()) return state.SkipWithError("loss");
    benchmark::DoNotOptimize(*loss);
  }
  SetShapeCounters(state, in, out, rows);
}

void BM_FlatQuantStep(benchmark::State& state) {
  const int64_t in = state.range(0), out = state.range(1), rows = state.range(2);
  const Layer layer = MakeLayer(in, out, rows);
  ThreadPool pool(static_cast<int>(state.range(3)));
  auto objective = FlatQuantObjective::Create(layer.problem, &pool);
  if (!objective.ok()) return state.SkipWithError("objective");
  const FlatQuantParams params = InitialFlatQuantParams(layer.problem, {});
  // 64 output channels spread over the layer, as a training step samples them.
  std::vector<int64_t> subset(64);
  for (int64_t j = 0; j < 64; ++j) subset[j] = j * (out / 64);
  for (auto _ : state) {
    auto evaluated = objective->Evaluate(params, QuantizerMode::kSte, nullptr, nullptr, subset);
    if (!evaluated.ok()) return state.SkipWithError("evaluate");
    benchmark::DoNotOptimize(evaluated->loss);
  }
  SetShapeCounters(state, in, 64, rows);
}

void BM_TrainFlatQuant(benchmark::State& state) {
  const int64_t in = state.range(0), out = state.range(1), rows = state.range(2);
  const Layer layer = MakeLayer(in, out, rows);
  ThreadPool pool(static_cast<int>(state.range(3)));
  double final_loss = 0.0;
  for (auto _ : state) {
    auto trained = TrainFlatQuant(layer.problem, {.pool = &pool});
    if (!trained.ok()) return state.SkipWithError("train");
    final_loss = trained->final_loss;  // (DoNotOptimize on a double garbled it here: GCC 12)
  }
  // A label, not a counter: the same at any thread count, and not a rate.
  state.SetLabel("final loss " + std::to_string(final_loss));
}

// A whole decoder layer as the sequential quantizer trains it: its linears qkv, o, gate|up and down
// of a Llama-shaped model (hidden, intermediate, kv width), one TrainFlatQuant each.
void BM_TrainFlatQuantLayer(benchmark::State& state) {
  const int64_t hidden = state.range(0), intermediate = state.range(1), kv = state.range(2);
  const int64_t rows = 64;  // the recipe's calibration rows
  std::vector<Layer> linears;
  linears.push_back(MakeLayer(hidden, hidden + 2 * kv, rows));   // qkv
  linears.push_back(MakeLayer(hidden, hidden, rows));            // o
  linears.push_back(MakeLayer(hidden, 2 * intermediate, rows));  // gate|up
  linears.push_back(MakeLayer(intermediate, hidden, rows));      // down
  ThreadPool pool(static_cast<int>(state.range(3)));
  for (auto _ : state) {
    for (const Layer& linear : linears) {
      auto trained = TrainFlatQuant(linear.problem, {.pool = &pool});
      if (!trained.ok()) return state.SkipWithError("train");
    }
  }
}

// Each shape on one thread and on all of them.
void AddShape(benchmark::internal::Benchmark* bench, int64_t in, int64_t out, int64_t rows) {
  const int64_t all = std::max(1u, std::thread::hardware_concurrency());
  bench->Args({in, out, rows, 1});
  if (all > 1) bench->Args({in, out, rows, all});
}

void LossShapes(benchmark::internal::Benchmark* bench) {
  bench->ArgNames({"in", "out", "rows", "threads"});
  AddShape(bench, 4096, 4096, 256);
  AddShape(bench, 8192, 8192, 256);
  bench->Iterations(1)->MeasureProcessCPUTime()->UseRealTime()->Unit(benchmark::kSecond);
}

void StepShapes(benchmark::internal::Benchmark* bench) {
  bench->ArgNames({"in", "out", "rows", "threads"});
  AddShape(bench, 4096, 4096, 256);
  AddShape(bench, 8192, 8192, 256);
  bench->Iterations(3)->MeasureProcessCPUTime()->UseRealTime()->Unit(benchmark::kMillisecond);
}

// The recipe's options (60 steps, 64 calibration rows, 64 output channels per step).
void TrainShapes(benchmark::internal::Benchmark* bench) {
  bench->ArgNames({"in", "out", "rows", "threads"});
  AddShape(bench, 2048, 2048, 64);
  AddShape(bench, 4096, 4096, 64);
  bench->Iterations(1)->MeasureProcessCPUTime()->UseRealTime()->Unit(benchmark::kSecond);
}

// Llama-3-8B and Llama-3-70B layers.
void LayerShapes(benchmark::internal::Benchmark* bench) {
  bench->ArgNames({"hidden", "intermediate", "kv", "threads"});
  AddShape(bench, 4096, 14336, 1024);
  AddShape(bench, 8192, 28672, 1024);
  bench->Iterations(1)->MeasureProcessCPUTime()->UseRealTime()->Unit(benchmark::kSecond);
}

BENCHMARK(BM_FlatQuantLoss)->Apply(LossShapes);
BENCHMARK(BM_FlatQuantStep)->Apply(StepShapes);
BENCHMARK(BM_TrainFlatQuant)->Apply(TrainShapes);
BENCHMARK(BM_TrainFlatQuantLayer)->Apply(LayerShapes);

}  // namespace
}  // namespace flatfleet::quant

BENCHMARK_MAIN();
