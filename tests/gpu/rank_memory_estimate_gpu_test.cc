// The planner's rank memory estimate (worker/quantized/rank_memory_estimate.h) against what the
// CUDA backend really uploads (CudaBackend::weight_bytes(): every linear, norm, rotary and
// embedding buffer) and the workspace the loaded model reserves for the batcher's defaults, for
// the float fixtures and llama-tiny quantized by the recipes the GPU runs.
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <string>

#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "gtest/gtest.h"
#include "kernels/cuda/backend/cuda_backend.h"
#include "quant/recipes.h"
#include "quantize/eval/model_under_test.h"
#include "quantize/quantize_model.h"
#include "tests/gpu/gpu_test_util.h"
#include "tests/gpu/model_comparison.h"
#include "worker/quantized/quantized_checkpoint.h"
#include "worker/quantized/rank_memory_estimate.h"

namespace flatfleet::quant {
namespace {

namespace fs = std::filesystem;

// CudaExecutionContext::ReserveWorkspace: a quarter more and 16 MiB for the backend's scratch.
int64_t CudaReservation(int64_t workspace) {
  return workspace + workspace / 4 + (int64_t{16} << 20);
}

RankMemoryEstimate CudaEstimate(const fs::path& dir) {
  absl::StatusOr<CheckpointShapes> shapes = ReadCheckpointShapes(dir);
  EXPECT_TRUE(shapes.ok()) << shapes.status();
  if (!shapes.ok()) return {};
  RankMemoryOptions options;
  options.engine = EngineKind::kCuda;
  absl::StatusOr<RankMemoryEstimate> estimate = EstimateRankMemory(*shapes, options);
  EXPECT_TRUE(estimate.ok()) << estimate.status();
  return estimate.ok() ? *estimate : RankMemoryEstimate{};
}

TEST(RankMemoryEstimateGpuTest, FloatFixturesHoldWhatTheEstimateCounts) {
  FF_SKIP_WITHOUT_GPU();
  for (const char* fixture : {"fixtures/llama-tiny", "fixtures/mixtral-tiny"}) {
    const fs::path dir = engine::SharedDir() / fixture;
    auto backend = kernels::cuda_backend::CudaBackend::Create({});
    ASSERT_TRUE(backend.ok()) << backend.status();
    auto model = engine::LoadLlamaModel(dir, **backend);
    ASSERT_TRUE(model.ok()) << model.status();
    const RankMemoryEstimate estimate = CudaEstimate(dir);
    EXPECT_EQ(estimate.weight_bytes(), (*backend)->weight_bytes()) << fixture;
    EXPECT_EQ(estimate.workspace_bytes, CudaReservation((*model)->WorkspaceBytes(512, 64)))
        << fixture;
  }
}

TEST(RankMemoryEstimateGpuTest, QuantizedCheckpointsHoldWhatTheEstimateCounts) {
  FF_SKIP_WITHOUT_GPU();
  static std::atomic<int> counter{0};
  const fs::path source = engine::SharedDir() / "fixtures/llama-tiny";
  // w2a8: INT4 operands of 2-bit weights; w4a4-flatquant: the fused transform (256 = 16 x 16)
  // beside the exact one and its float32 row (688 = 16 x 43).
  for (const char* recipe_name : {"w8a8", "w4a8", "w4a8-intscale", "w2a8", "w4a4-flatquant"}) {
    const fs::path out =
        fs::path(::testing::TempDir()) /
        absl::StrFormat("gpu-rank-memory-%s-%d-%d", recipe_name, getpid(), counter++);
    fs::remove_all(out);
    auto model = CheckpointModel(source, /*bf16_rope=*/false);
    ASSERT_TRUE(model.ok()) << model.status();
    auto recipe = RecipeByName(recipe_name);
    ASSERT_TRUE(recipe.ok()) << recipe.status();
    auto quantized = QuantizeInMemory(*model, *recipe, RandomCalibration(model->config.vocab_size));
    ASSERT_TRUE(quantized.ok()) << quantized.status();
    CheckpointWriteOptions write;
    write.source_dir = source;
    write.out_dir = out;
    ASSERT_TRUE(WriteQuantizedCheckpoint(*quantized->model, *quantized->backend, write).ok());
    auto backend = kernels::cuda_backend::CudaBackend::Create({});
    ASSERT_TRUE(backend.ok()) << backend.status();
    auto loaded = LoadQuantizedLlamaModel(out, {}, backend->get());
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    const RankMemoryEstimate estimate = CudaEstimate(out);
    EXPECT_EQ(estimate.weight_bytes(), (*backend)->weight_bytes()) << recipe_name;
    EXPECT_EQ(estimate.workspace_bytes, CudaReservation(loaded->model->WorkspaceBytes(512, 64)))
        << recipe_name;
    fs::remove_all(out);
  }
}

}  // namespace
}  // namespace flatfleet::quant
