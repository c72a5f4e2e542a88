// Quantized checkpoints on the CUDA backend: a checkpoint written by the quantizer loads onto the
// GPU's integer GEMMs and gives the CPU integer reference's logits within the bf16 activations'
// tolerance (per recipe, below); a recipe the GPU has no kernel for is refused naming a layer and
// the feature.
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <filesystem>
#include <memory>
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
#include "tests/quant/test_random.h"
#include "worker/quantized/quantized_checkpoint.h"

namespace flatfleet::quant {
namespace {

namespace fs = std::filesystem;

struct QuantizedCase {
  const char* model;   // under the shared directory
  const char* recipe;  // a recipe name; "w4a8-per-channel" is w4a8 without groups
  // Logits bound (relative L2 over all positions). INT8 activations: 3e-2, with decisive top-1
  // exact (below).
  double max_relative_error = 3e-2;
  // 4-bit activations: the GPU quantizes bf16 activations where the CPU quantizes float32 ones,
  // and a code moves one step (an error of max|x| / 7, 18x an INT8 step) wherever a value sat
  // within its bf16 rounding of a rounding boundary; compounded over every linear of every layer
  // the two models' logits drift apart by far more than any top-1 margin. Measured on the H200
  // (2026-12-02): relative error 0.09-0.19 on stories260K, 0.28-0.37 on the random llama-tiny,
  // top-1 0.25-0.59, no decisive position at all. So these cases only guard against a broken
  // path (wrong transform, order or scale: relative error >= 1 and top-1 near 1 / vocab): error
  // below 0.5 and top-1 of at least 0.1. Their numerics are checked bit for bit per layer by
  // StoredRecipeLayerTest and ActivationQuantizerRecipesTest.
  bool four_bit_activations = false;
};

absl::StatusOr<QuantRecipe> Recipe(const std::string& name) {
  if (name != "w4a8-per-channel") return RecipeByName(name);
  absl::StatusOr<QuantRecipe> recipe = RecipeByName("w4a8");
  if (recipe.ok()) {
    recipe->name = name;
    recipe->spec.weight.group_size = 0;
  }
  return recipe;
}

// Quantizes the model on the CPU (seeded random calibration ids) into a fresh directory.
absl::StatusOr<fs::path> WriteCheckpoint(const fs::path& model_dir,
                                         const std::string& recipe_name) {
  static std::atomic<int> counter{0};
  const fs::path out = fs::path(::testing::TempDir()) /
                       absl::StrFormat("gpu-qckpt-%s-%d-%d", recipe_name, getpid(), counter++);
  fs::remove_all(out);
  FF_ASSIGN_OR_RETURN(ModelUnderTest model, CheckpointModel(model_dir, /*bf16_rope=*/false));
  FF_ASSIGN_OR_RETURN(QuantRecipe recipe, Recipe(recipe_name));
  FF_ASSIGN_OR_RETURN(InMemoryQuantizedModel quantized,
                      QuantizeInMemory(model, recipe, RandomCalibration(model.config.vocab_size)));
  CheckpointWriteOptions write;
  write.source_dir = model_dir;
  write.out_dir = out;
  FF_RETURN_IF_ERROR(WriteQuantizedCheckpoint(*quantized.model, *quantized.backend, write));
  return out;
}

class CudaQuantizedModelTest : public ::testing::TestWithParam<QuantizedCase> {};

TEST_P(CudaQuantizedModelTest, MatchesTheCpuIntegerReference) {
  FF_SKIP_WITHOUT_GPU();
  const QuantizedCase c = GetParam();
  auto dir = WriteCheckpoint(engine::SharedDir() / c.model, c.recipe);
  ASSERT_TRUE(dir.ok()) << dir.status();
  auto backend = kernels::cuda_backend::CudaBackend::Create({});
  ASSERT_TRUE(backend.ok()) << backend.status();
  auto cpu = LoadQuantizedLlamaModel(*dir);
  ASSERT_TRUE(cpu.ok()) << cpu.status();
  auto gpu = LoadQuantizedLlamaModel(*dir, {}, backend->get());
  ASSERT_TRUE(gpu.ok()) << gpu.status();
  EXPECT_EQ(gpu->backend, nullptr);  // the caller's backend runs it
  const uint64_t seed = test_util::FreshSeed();
  SCOPED_TRACE(::testing::Message() << "FLATFLEET_TEST_SEED=" << seed);
  const engine::Comparison result = engine::Compare(*cpu->model, *gpu->model, seed);
  // The GPU's activations are bf16 before they are quantized to INT8, so an INT8 code can move by
  // one step where the float32 reference sat near a rounding boundary; the rest is the bf16
  // model's own error. The bf16 engine's bounds (cuda_engine_test.cc) hold: raw top-1 over random
  // prompts measured 0.91..0.99 (near-ties), so agreement is required at the decisive positions.
  if (c.four_bit_activations) {
    EXPECT_LT(result.relative_error, 0.5);
    EXPECT_GE(result.top1, 0.1);
  } else {
    EXPECT_LT(result.relative_error, c.max_relative_error);
    EXPECT_EQ(result.decisive_top1, 1.0);
    EXPECT_GE(result.decisive_positions, engine::kMinDecisivePositions);
  }
  std::printf("%s %s: relative error %.3e, top-1 %.4f (decisive positions %lld of %lld: %.4f)\n",
              c.model, c.recipe, result.relative_error, result.top1,
              static_cast<long long>(result.decisive_positions),
              static_cast<long long>(result.positions), result.decisive_top1);
}

INSTANTIATE_TEST_SUITE_P(
    Recipes, CudaQuantizedModelTest,
    ::testing::Values(
        QuantizedCase{"fixtures/llama-tiny", "w8a8"},
        QuantizedCase{"fixtures/llama-tiny", "w4a8-per-channel"},
        // Groups of 128, the 688-wide down_proj per channel (the width fallback).
        QuantizedCase{"fixtures/llama-tiny", "w4a8"},
        QuantizedCase{"fixtures/llama-tiny", "w4a8-gptq"},
        QuantizedCase{"models/stories260K", "w8a8"},
        QuantizedCase{"models/stories260K", "w4a8-per-channel"},
        // The activation recipes of the GPU quantizer (int8_activation_quantizer.h):
        // W4A4's INT4 codes, static per-tensor scales, SmoothQuant's x / s and
        // FlattenQuant's split channels.
        QuantizedCase{"models/stories260K", "w4a4", 0.0, true},
        QuantizedCase{"models/stories260K", "w8a8-static"},
        QuantizedCase{"models/stories260K", "w8a8-smooth"},
        QuantizedCase{"models/stories260K", "w8a8-smooth-static"},
        QuantizedCase{"models/stories260K", "w4a8-smooth"},
        QuantizedCase{"models/stories260K", "w8a8-flatten"},
        QuantizedCase{"models/stories260K", "w4a4-flatten", 0.0, true},
        QuantizedCase{"fixtures/llama-tiny", "w4a4", 0.0, true},
        QuantizedCase{"fixtures/llama-tiny", "w8a8-smooth"},
        // The randomized Hadamard rotation (hadamard_transform.h): stories260K's 64-wide inputs
        // are a power of two, its 172-wide down_proj input 4 x a random 43 x 43 block.
        QuantizedCase{"models/stories260K", "w4a4-hadamard", 0.0, true},
        QuantizedCase{"models/stories260K", "w8a8-hadamard-gptq"},
        QuantizedCase{"fixtures/llama-tiny", "w4a4-hadamard", 0.0, true},
        // FlatQuant's trained Kronecker transform (kronecker_transform.h): stories260K's 64 =
        // 8 x 8 and 172 = 4 x 43, llama-tiny's 256 = 16 x 16 and 688 = 16 x 43.
        QuantizedCase{"models/stories260K", "w4a4-flatquant", 0.0, true},
        QuantizedCase{"fixtures/llama-tiny", "w4a4-flatquant", 0.0, true},
        // Integer Scale: llama-tiny's 256-wide inputs in groups of 128 take the integer
        // multipliers (its 688-wide down_proj falls back to per-channel float scales).
        QuantizedCase{"fixtures/llama-tiny", "w4a8-intscale"},
        // 2- and 3-bit weights as INT4 operands of the W4A8 GEMMs (int4_operand_widening.h):
        // ABQ-LLM's asymmetric w3a8 / w2a8, GPTQ's w3a8, the balanced codes with the output
        // correction (w3a8-abq, w2a8-abq) and without (w2a8-bal).
        QuantizedCase{"models/stories260K", "w3a8"}, QuantizedCase{"fixtures/llama-tiny", "w2a8"},
        QuantizedCase{"models/stories260K", "w3a8-gptq"},
        QuantizedCase{"models/stories260K", "w3a8-abq"},
        QuantizedCase{"fixtures/llama-tiny", "w2a8-abq"},
        QuantizedCase{"fixtures/llama-tiny", "w2a8-bal"}),
    [](const ::testing::TestParamInfo<QuantizedCase>& info) {
      std::string name = std::string(info.param.model) + "_" + info.param.recipe;
      for (char& ch : name) {
        if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
      }
      return name;
    });

TEST(CudaQuantizedModelTest, RecipesWithoutAGpuKernelAreRefusedNamingALayer) {
  FF_SKIP_WITHOUT_GPU();
  auto dir = WriteCheckpoint(engine::SharedDir() / "fixtures/llama-tiny", "w4a4-quik");
  ASSERT_TRUE(dir.ok()) << dir.status();
  auto backend = kernels::cuda_backend::CudaBackend::Create({});
  ASSERT_TRUE(backend.ok()) << backend.status();
  auto gpu = LoadQuantizedLlamaModel(*dir, {}, backend->get());
  ASSERT_FALSE(gpu.ok());
  EXPECT_EQ(gpu.status().code(), absl::StatusCode::kFailedPrecondition) << gpu.status();
  EXPECT_NE(gpu.status().message().find("model.layers.0."), std::string::npos) << gpu.status();
  EXPECT_NE(gpu.status().message().find("--device cpu"), std::string::npos) << gpu.status();
  EXPECT_NE(gpu.status().message().find("QUIK"), std::string::npos) << gpu.status();
}

}  // namespace
}  // namespace flatfleet::quant
